"""What the report reads: the published runs under `results/` and their run records.

A run is a folder `results/<experiment>/<name>/` with `results.json` (its figures), and, when it
was published from a workdir of this version, `run.json` (`aml2_jax.runtime.run_record`: command,
commit, dates, machine). A run that is absent renders as "not run yet"; one without `run.json`
renders as "run record missing", never with invented values.
"""

import dataclasses
import json
from pathlib import Path

NOT_RUN = 'not run yet'
RECORD_MISSING = 'run record missing'

# The runs the tables know, by key (their folder under results/).
SPAM_RUNS = tuple(f'spam/{cell}_{protocol}' for protocol in ('study', 'dedup')
                  for cell in ('rnn', 'lstm'))
BEST_VAL_SUFFIX = '_best_val'  # The same spam run, tested at the epoch of lowest validation loss.
TEXTGEN_RUNS = tuple(f'textgen/{cell}_{objective}' for cell in ('lstm', 'rnn')
                     for objective in ('next_char', 'all_chars'))
TEXTGEN_BASELINES = 'textgen/baselines'
TEXTGEN_ONE_EPOCH = 'textgen/lstm_next_char_one_epoch'  # One whole epoch of the study's objective.
CGAN_RUNS = ('cgan/default', 'cgan/study_recipe')
JUDGE = 'fmnist_classifier/judge'
MAIN_JOB = 'cgan/default'  # Published from a first run on a fresh checkout: the judge included.
BENCH_PEERS = 'bench/peers_cpu.json'


def load_json(path: Path) -> dict | None:
  """The JSON object in `path`, or None when it is missing or unreadable."""
  try:
    value = json.loads(Path(path).read_text(encoding='utf-8'))
  except (OSError, ValueError):
    return None
  return value if isinstance(value, dict) else None


# Own readers rather than `runtime.storage`'s: that module imports JAX (through `console`), and
# `--check` must answer without it; a torn line is skipped here, not an error.
def read_jsonl(path: Path) -> list[dict]:
  """The records of a `metrics.jsonl`; a torn line (a run killed while writing) is skipped."""
  try:
    lines = Path(path).read_text(encoding='utf-8').splitlines()
  except OSError:
    return []
  records = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict):
      records.append(record)
  return records


def by_epoch(records: list[dict]) -> list[dict]:
  """One record per epoch (the last one logged for it: a resumed run may log an epoch twice)."""
  last = {r['epoch']: r for r in records if 'epoch' in r}
  return [last[epoch] for epoch in sorted(last)]


@dataclasses.dataclass(frozen=True)
class Run:
  """One published run: its folder, `results.json` (None: not run yet) and `run.json`."""
  key: str
  path: Path
  results: dict | None
  record: dict | None

  @property
  def exists(self) -> bool:
    return self.results is not None

  def get(self, *names, default=None):
    """The first of `names` present in results.json (newer runs prefix test figures `test_`)."""
    for name in names:
      if self.results and self.results.get(name) is not None:
        return self.results[name]
    return default

  def last_invocation(self) -> dict | None:
    invocations = (self.record or {}).get('invocations') or []
    return invocations[-1] if invocations else None

  def wall_s(self) -> float | None:
    """Seconds of every recorded invocation together (a resumed run has several)."""
    invocations = (self.record or {}).get('invocations') or []
    times = [i['wall_s'] for i in invocations if isinstance(i.get('wall_s'), (int, float))]
    return round(sum(times), 1) if times else None


def load_run(root: Path, key: str) -> Run:
  """The run `results/<key>` under the repository root `root`."""
  path = Path(root) / 'results' / key
  return Run(key, path, load_json(path / 'results.json'), load_json(path / 'run.json'))


def machine_text(machine: dict) -> str:
  """'AMD EPYC 7B13, 2 cores (cpu)' or '..., 16 cores (gpu: 1 × NVIDIA H200)'."""
  cpu = machine.get('cpu') or 'unknown CPU'
  cores = machine.get('cores')
  text = f'{cpu}, {cores} cores' if cores else cpu
  backend = machine.get('backend') or 'cpu'
  if backend != 'cpu' and machine.get('device_kind'):
    text += f' ({backend}: {machine.get("num_devices", 1)} × {machine["device_kind"]})'
  else:
    text += f' ({backend})'
  if (machine.get('num_processes') or 1) > 1:
    text += f', {machine["num_processes"]} processes'
  return text


def _provenance_key(invocation: dict) -> tuple[str, str, str]:
  """(machine, date, commit) of an invocation, as the line under a table shows them."""
  commit = ((invocation.get('git') or {}).get('commit') or '')[:7] or 'unknown'
  if (invocation.get('git') or {}).get('dirty'):
    commit += ' with uncommitted changes'
  return (machine_text(invocation.get('machine') or {}),
          str(invocation.get('started', ''))[:10] or 'date unknown', commit)


def provenance(runs: list[Run], commands_at: str | None = None) -> str:
  """The lines under a table: where, when and from which commit and command each run was made.

  Runs measured on the same machine, day and commit share one line; runs published without a
  run record are named as such; runs not made yet are left out (their rows say so). With
  `commands_at` (a Markdown link), the commands are left to that page: the README stays short.
  """
  groups: dict[tuple, list[str]] = {}
  missing = []
  for run in runs:
    if not run.exists:
      continue
    last = run.last_invocation()
    if last is None:
      missing.append(f'`results/{run.key}`')
      continue
    commands = []
    for invocation in run.record['invocations']:
      command = f'`{invocation.get("command", "?")}`'
      if command not in commands:
        commands.append(command)
    groups.setdefault(_provenance_key(last), []).extend(commands)
  if commands_at:  # The front page: one line per machine and day, the commits listed together.
    merged: dict[tuple, list[str]] = {}
    for machine, date, commit in groups:
      merged.setdefault((machine, date), []).append(commit)
    lines = [f'Measured on {machine}, {date}, {"commit" if len(commits) == 1 else "commits"} '
             f'{", ".join(commits)}: commands in {commands_at}.'
             for (machine, date), commits in merged.items()]
  else:
    lines = [f'Measured on {machine}, {date}, commit {commit}: {"; ".join(commands)}.'
             for (machine, date, commit), commands in groups.items()]
  if missing:
    lines.append(f'{", ".join(missing)}: {RECORD_MISSING}.')
  return '\n\n'.join(lines)
