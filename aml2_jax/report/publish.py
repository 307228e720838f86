"""Putting a finished run into `results/`: its small files, and how the docs show it.

`publish` copies what the tables read (results.json, config.json, run.json, metrics.jsonl,
curves.png, the last sample grid or samples.txt block, each seed_<k>/'s files; none over
MAX_BYTES), then writes `report.json`, which places the run in the tables (tables.toml selects
runs by role): `--role` (repeatable: headline, choice, best_val, baseline, config, main_job,
judge, one_epoch, ngram_baselines, bench), `--label`, `--setting`, `--order` and, for a choice or
best_val run, `--baseline` (whose label and setting it takes unless given). A choice's `changed`
fields differ between its config.json and its baseline's (a field newer than the baseline is
compared with its config default; NOT_TRAINING fields only place or speed up a run). A run
published again keeps its report.json; flags replace the fields they name:
  python -m aml2_jax.report publish runs/x results/textgen/choices/lstm_all_chars_x \\
      --role=choice --baseline=textgen/lstm_all_chars
`record` runs a command that is not a launch.py run (the n-gram baselines), writing its run.json.
"""

import datetime
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from aml2_jax import jsonio
from aml2_jax.errors import UserError

MAX_BYTES = 300 * 1024  # results/ is committed: nothing large goes there.
TOP_FILES = ('results.json', 'config.json', 'run.json', 'metrics.jsonl', 'curves.png')
SEED_FILES = ('results.json', 'metrics.jsonl', 'split.json')
NOT_TRAINING = ('devices', 'data.dir', 'num_seeds', 'seeds_in_one_program', 'num_devices',
                'steps_per_call', 'backend_defaults', 'checkpoint_every_steps',
                'keep_checkpoints', 'model.unroll', 'model.ops', 'eval.classifier_')


def _flat(tree: dict, prefix: str = '') -> dict:
  """{'optim.learning_rate': 0.001, ...} of a resolved config.json."""
  return {k: v for key, val in tree.items() for k, v in (_flat(val, f'{prefix}{key}.')
          if isinstance(val, dict) else {prefix + key: val}).items()}


def _defaults(run_dir: Path) -> dict:
  """The flat defaults of the config (and variant) named by the command of the run in `run_dir`."""
  command = (jsonio.read_json_object(run_dir / 'run.json').get('invocations') or [{}])[0]
  found = re.search(r'--config=configs/(\w+)\.py(?::(\w+))?', command.get('command', ''))
  from aml2_jax.training.config import load_config  # pylint: disable=g-import-not-at-top
  return _flat(json.loads(load_config(found[1], found[2] or '').to_json())) if found else {}


def describe(run_dir: Path, dest: Path, **flags) -> dict:
  """dest's report.json, updated with the flags given (roles, label, setting, order, baseline)."""
  report = jsonio.read_json_object(dest / 'report.json')
  report.update({k: v for k, v in flags.items() if v not in (None, [])})
  if report.get('baseline'):
    base = next((p for p in dest.resolve().parents if p.name == 'results'), dest.parent) / report[
        'baseline']
    about = jsonio.read_json_object(base / 'report.json')
    if not about:
      raise UserError(f'--baseline={report["baseline"]}: {base} has no report.json; give '
                         'the key of a published run, e.g. spam/rnn_study.')
    report = {'label': about.get('label'), 'setting': about.get('setting'), **report}
    if 'choice' in report.get('roles', []):  # The training fields it changed.
      mine, theirs = (_flat(jsonio.read_json_object(d / 'config.json')) for d in (run_dir, base))
      if not mine or not theirs:
        raise UserError(f'{run_dir} and {base} both need a config.json: a choice names the '
                           'fields it changed.')
      theirs = {**_defaults(base), **theirs}  # A field newer than the baseline: its default there.
      report['changed'] = [f'{k}={mine[k]}' for k in sorted(mine)
                           if not k.startswith(NOT_TRAINING) and mine[k] != theirs.get(k)]
  if not report.get('roles'):
    raise UserError(f'{dest} has no report.json: say how the docs show the run, e.g. '
                       '--role=headline --label=LSTM --setting=all_chars.')
  return report


def publish(run_dir: Path, dest: Path, splits: bool = True, **flags) -> list[str]:
  """Copies the run's small files into `dest`, writes its report.json; returns a line per file.
  `splits=False` leaves out the seeds' split.json (a candidate on its baseline's splits)."""
  run_dir, dest = Path(run_dir), Path(dest)
  if not (run_dir / 'results.json').is_file():
    raise UserError(f'{run_dir} has no results.json: the run has not finished (or that is '
                       'not a workdir); finish it, e.g. with --mode=eval, then publish.')
  report, lines = describe(run_dir, dest, **flags), []
  files = [*(run_dir / n for n in TOP_FILES), *sorted(run_dir.glob('samples/epoch_*.png'))[-1:],
           *(s / n for s in sorted(run_dir.glob('seed_*')) for n in SEED_FILES
             if splits or n != 'split.json')]
  for src in (f for f in files if f.is_file()):
    rel = src.relative_to(run_dir).as_posix()
    if src.stat().st_size > MAX_BYTES:
      lines.append(f'skipped {src} ({src.stat().st_size / 1024:.0f} KB > {MAX_BYTES // 1024} KB)')
      continue
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest / rel)
    lines.append(f'copied {rel}')
  if (run_dir / 'samples.txt').is_file():  # The last epoch's block (blocks: blank-line apart).
    blocks = [b for b in (run_dir / 'samples.txt').read_text('utf-8').split('\n\n') if b.strip()]
    jsonio.atomic_write_text(dest / 'samples.txt', blocks[-1].strip('\n') + '\n')
    lines.append("copied samples.txt (the last epoch's samples)")
  jsonio.write_json(dest / 'report.json', report)
  lines.append(f'wrote report.json: {json.dumps(report, ensure_ascii=False)}')
  if not (run_dir / 'run.json').is_file():
    lines.append(f'note: {run_dir} has no run.json; its tables will say "run record missing".')
  return lines


def record(dest: Path, command: list[str]) -> int:
  """Runs `python ...` (`command`) and appends its invocation to `dest/run.json`."""
  from aml2_jax.runtime import run_record  # pylint: disable=g-import-not-at-top  (imports JAX)
  if not command or command[0] not in ('python', 'python3'):
    raise UserError('record runs a Python command: python -m aml2_jax.report record DEST -- '
                       'python -m MODULE ...')
  Path(dest).mkdir(parents=True, exist_ok=True)
  entry, start = run_record.invocation(mode='record', argv=command[1:]), time.perf_counter()
  status = subprocess.run([sys.executable, *command[1:]], check=False).returncode
  entry.update(finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               wall_s=round(time.perf_counter() - start, 1),
               exit='ok' if status == 0 else f'exit status {status}')
  saved = run_record.read(dest)
  saved['invocations'].append(entry)
  jsonio.atomic_write_text(Path(dest) / run_record.RUN_FILE, json.dumps(saved, indent=2) + '\n')
  return status
