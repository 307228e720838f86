"""Putting a finished run into `results/`: its small files only, never checkpoints or events.

`publish(run_dir, dest)` copies what the tables and figures read: `results.json`, `config.json`,
`run.json`, `metrics.jsonl`, `curves.png`, the last sample grid (`samples/epoch_XXX.png`) or the
last epoch's samples of `samples.txt`, and, for a several-seed run, each `seed_<k>/`'s
`results.json`, `metrics.jsonl` and `split.json`. A file over `MAX_BYTES` is skipped, and said so.

`record(dest, command)` runs a command that is not a `launch.py` run (the n-gram baselines) and
writes its `run.json` the way `launch.py` does.
"""

import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

MAX_BYTES = 300 * 1024  # results/ is committed: nothing large goes there.
TOP_FILES = ('results.json', 'config.json', 'run.json', 'metrics.jsonl', 'curves.png')
SEED_FILES = ('results.json', 'metrics.jsonl', 'split.json')


class PublishError(Exception):
  """A run that cannot be published (one line naming the problem and the fix)."""


def _last_samples_text(path: Path) -> str:
  """The last epoch's block of a `samples.txt` (blocks are separated by a blank line)."""
  blocks = [b for b in path.read_text(encoding='utf-8').split('\n\n') if b.strip()]
  return blocks[-1].strip('\n') + '\n'


def _planned(run_dir: Path, splits: bool) -> list[tuple[Path, str]]:
  """(source, path under dest) of every file to copy that exists."""
  plan = [(run_dir / name, name) for name in TOP_FILES]
  grids = sorted((run_dir / 'samples').glob('epoch_*.png'))
  if grids:
    plan.append((grids[-1], f'samples/{grids[-1].name}'))
  for seed in sorted(run_dir.glob('seed_*')):
    plan += [(seed / name, f'{seed.name}/{name}') for name in SEED_FILES
             if splits or name != 'split.json']
  return [(src, rel) for src, rel in plan if src.is_file()]


def publish(run_dir: Path, dest: Path, splits: bool = True) -> list[str]:
  """Copies the run's small files into `dest`; returns one line per file copied or skipped.

  `splits=False` leaves out the seeds' `split.json`: for a candidate run that trains on the
  same splits (split seeds) as a published baseline, whose copies already stand.
  """
  run_dir, dest = Path(run_dir), Path(dest)
  if not (run_dir / 'results.json').is_file():
    raise PublishError(f'{run_dir} has no results.json: the run has not finished (or that is '
                       'not a workdir); finish it, e.g. with --mode=eval, then publish.')
  lines = []
  for src, rel in _planned(run_dir, splits):
    size = src.stat().st_size
    if size > MAX_BYTES:
      lines.append(f'skipped {src} ({size / 1024:.0f} KB > {MAX_BYTES // 1024} KB)')
      continue
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    lines.append(f'copied {rel}')
  samples = run_dir / 'samples.txt'
  if samples.is_file():
    (dest / 'samples.txt').write_text(_last_samples_text(samples), encoding='utf-8')
    lines.append('copied samples.txt (the last epoch\'s samples)')
  if not (run_dir / 'run.json').is_file():
    lines.append(f'note: {run_dir} has no run.json; its tables will say "run record missing".')
  return lines


def record(dest: Path, command: list[str]) -> int:
  """Runs `python ...` (`command`) and appends its invocation to `dest/run.json`."""
  from aml2_jax.runtime import run_record  # pylint: disable=g-import-not-at-top  (imports JAX)
  if not command or command[0] not in ('python', 'python3'):
    raise PublishError('record runs a Python command: python -m aml2_jax.report record DEST -- '
                       'python -m MODULE ...')
  dest = Path(dest)
  dest.mkdir(parents=True, exist_ok=True)
  entry = run_record.invocation(mode='record', argv=command[1:])
  start = time.perf_counter()
  status = subprocess.run([sys.executable, *command[1:]], check=False).returncode
  finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
  entry.update(finished=finished, wall_s=round(time.perf_counter() - start, 1),
               exit='ok' if status == 0 else f'exit status {status}')
  saved = run_record.read(dest)
  saved['invocations'].append(entry)
  (dest / run_record.RUN_FILE).write_text(json.dumps(saved, indent=2) + '\n', encoding='utf-8')
  return status
