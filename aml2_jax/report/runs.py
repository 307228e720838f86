"""What the report reads: the published runs under `results/`, each described by its own files.

A run is a folder `results/<experiment>/<name>/` with `report.json` (how the docs show it, written
by `publish`), `results.json` (its figures) and `run.json` (`aml2_jax.runtime.run_record`:
command, commit, dates, machine). `results/study.json` holds the figures the tables compare with.
"""

import dataclasses
import statistics
from pathlib import Path

from aml2_jax import jsonio

NOT_RUN = 'not run yet'


@dataclasses.dataclass(frozen=True, eq=False)  # A run is itself: compared by identity.
class Run:
  """One published run: its key (its folder under results/), report.json, results, run record."""
  key: str
  path: Path
  report: dict
  results: dict
  record: dict

  def __getattr__(self, name: str):  # report.json's fields: run.label, run.roles, run.changed.
    if name.startswith('__'):
      raise AttributeError(name)
    return self.report.get(name, [] if name in ('roles', 'changed') else '')

  def get(self, name: str, default=None):
    return default if self.results.get(name) is None else self.results[name]

  def invocations(self) -> list[dict]:
    return self.record.get('invocations') or []

  def wall_s(self) -> float | None:
    """Seconds of every recorded invocation together (a resumed run has several)."""
    times = [i['wall_s'] for i in self.invocations() if isinstance(i.get('wall_s'), (int, float))]
    return round(sum(times), 1) if times else None

  def metrics(self) -> list[dict]:
    """A record per epoch (the last logged) of metrics.jsonl, or the mean of the seeds' ones."""
    epochs: dict[int, list[dict]] = {}
    whole = self.path / 'metrics.jsonl'
    for path in [whole] if whole.is_file() else sorted(self.path.glob('seed_*/metrics.jsonl')):
      for epoch, record in {r['epoch']: r for r in jsonio.read_jsonl(path) if 'epoch' in r}.items():
        epochs.setdefault(epoch, []).append(record)
    return [{k: statistics.fmean(r[k] for r in rs if k in r) for k in set().union(*rs)}
            for _, rs in sorted(epochs.items())]


@dataclasses.dataclass(frozen=True)
class Results:
  """Every run under `root/results/` that has a report.json, by key, and `study.json`."""
  root: Path
  runs: dict[str, Run]
  study: dict

  @classmethod
  def load(cls, root: Path) -> 'Results':
    base, read = Path(root) / 'results', jsonio.read_json_object
    runs = [Run(path.relative_to(base).as_posix(), path, about := read(path / 'report.json'),
                read(path / about.get('results', 'results.json')), read(path / 'run.json'))
            for path in sorted(p.parent for p in base.glob('**/report.json'))]
    return cls(Path(root), {r.key: r for r in runs}, read(base / 'study.json'))

  def select(self, role: str, experiment: str = '') -> list[Run]:
    """The runs with `role` (of `experiment`), by their report's `order`."""
    found = [r for r in self.runs.values()
             if role in r.roles and experiment in ('', r.key.split('/')[0])]
    return sorted(found, key=lambda r: (r.report.get('order', 0), r.key))


def machine_text(m: dict) -> str:
  """'AMD EPYC 7B13, 2 cores (cpu)' or '..., 16 cores (gpu: 1 × NVIDIA H200)'."""
  backend, processes = m.get('backend') or 'cpu', m.get('num_processes') or 1
  cores = f', {m["cores"]} cores' if m.get('cores') else ''
  devices = (f': {m.get("num_devices", 1)} × {m["device_kind"]}'
             if backend != 'cpu' and m.get('device_kind') else '')
  return (f'{m.get("cpu") or "unknown CPU"}{cores} ({backend}{devices})'
          + (f', {processes} processes' if processes > 1 else ''))


def provenance(runs: list[Run], commands_at: str | None = None) -> str:
  """The lines under a table: where, when, from which commit and command each run was made (a
  line per machine, day and commit); with `commands_at` (a link) the commands are left to it."""
  groups: dict[tuple | None, list[str]] = {}
  for run in runs:
    last = run.invocations()[-1] if run.invocations() else {}
    git, date = last.get('git') or {}, str(last.get('started', ''))[:10] or 'date unknown'
    commit = (git.get('commit') or 'unknown')[:7]
    commit += ' with uncommitted changes' if git.get('dirty') else ''
    where = (machine_text(last.get('machine') or {}), date, commit) if last else None
    commands = groups.setdefault(where, [])
    commands += [c for c in dict.fromkeys(f'`{i.get("command", "?")}`' for i in run.invocations())
                 if c not in commands] if last else [f'`results/{run.key}`']
  missing = groups.pop(None, [])
  merged: dict[tuple, list[str]] = {}  # The front page: one line per machine and day.
  for machine, date, commit in groups:
    merged.setdefault((machine, date), []).append(commit)
  lines = [f'Measured on {machine}, {date}, {"commit" if len(commits) == 1 else "commits"} '
           f'{", ".join(commits)}: commands in {commands_at}.'
           for (machine, date), commits in merged.items()] if commands_at else [
               f'Measured on {machine}, {date}, commit {commit}: {"; ".join(commands)}.'
               for (machine, date, commit), commands in groups.items()]
  return '\n\n'.join(lines + ([f'{", ".join(missing)}: run record missing.'] if missing else []))
