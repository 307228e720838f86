"""`<workdir>/run.json`: per invocation, the command, git commit, times, exit, machine and library
versions, so that every published figure names the run that made it."""

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from aml2_jax import console, jsonio
from aml2_jax.runtime import storage

RUN_FILE = 'run.json'
_LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'ml-collections', 'numpy',
              'scipy')
# What `results.json` says of training: an `eval` that rewrites the file keeps them.
_TRAINING_FACTS = ('train_wall_s', 'resumed_from_step', 'trained_in_one_program_with_seeds')


def _iso(seconds: float | None = None) -> str:
  """A time (default: now) in UTC, ISO 8601 to the second."""
  moment = datetime.datetime.fromtimestamp(time.time() if seconds is None else seconds,
                                           datetime.timezone.utc)
  return moment.isoformat(timespec='seconds')


def _timestamp(text: str | None) -> float | None:
  try:
    return datetime.datetime.fromisoformat(text).timestamp()
  except (TypeError, ValueError):
    return None


def git_state(repo: Path | None = None) -> dict:
  """{'commit': sha or None, 'dirty': bool or None} of the repository holding this package."""
  def git(*args: str) -> str | None:
    try:
      out = subprocess.run(['git', *args], cwd=repo or Path(__file__).resolve().parents[2],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
      return None
    return out.stdout.strip() if out.returncode == 0 else None

  commit = git('rev-parse', 'HEAD')
  status = git('status', '--porcelain', '--untracked-files=no') if commit else None
  return {'commit': commit, 'dirty': None if status is None else bool(status)}


def cpu_model() -> str:
  """The CPU's model name (from /proc/cpuinfo on Linux)."""
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  try:
    memory_gib = round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30, 1)
  except (ValueError, OSError, AttributeError):
    memory_gib = None
  return {'cpu': cpu_model(), 'cores': os.cpu_count(), 'memory_gib': memory_gib,
          'os': f'{platform.system()} {platform.release()}',
          'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
          'num_devices': len(devices), 'num_processes': jax.process_count()}


def _version(name: str) -> str | None:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def invocation(mode: str, argv: list[str] | None = None) -> dict:
  """A fresh record of this invocation (`python launch.py ...`), completed at its end."""
  argv = sys.argv if argv is None else argv
  program = Path(argv[0]).name if argv[0].endswith('launch.py') else argv[0]
  return {'command': shlex.join(['python', program, *argv[1:]]), 'mode': mode, 'git': git_state(),
          'started': _iso(), 'machine': _machine(),
          'versions': {'python': platform.python_version(),
                       **{name: _version(name) for name in _LIBRARIES}}}


def read(workdir: Path) -> dict:
  """The workdir's run record ({'invocations': []} when there is none or it is unreadable)."""
  record = jsonio.read_json_object(Path(workdir) / RUN_FILE)
  return record if isinstance(record.get('invocations'), list) else {'invocations': []}


def training_facts(run_dir: Path) -> dict:
  """What `<run_dir>/results.json` says of training ({} when there is none)."""
  results = jsonio.read_json_object(Path(run_dir) / 'results.json')
  return {k: v for k, v in results.items() if k in _TRAINING_FACTS}


def _write_times(workdir: Path) -> list[float]:
  """Modification times of the workdir's files, run.json aside (what the runs wrote)."""
  times = []
  for folder, _, names in os.walk(workdir):
    for name in names:
      if name != RUN_FILE:
        try:
          times.append(os.stat(os.path.join(folder, name)).st_mtime)
        except OSError:
          continue  # Removed while we looked (a checkpoint being rotated).
  return times


def _close_unfinished(record: dict, workdir: Path, now: float) -> None:
  """Completes invocations killed without notice (a start, no end).

  The end is taken as the workdir's newest write before the next start: a lower bound, since
  work after it was lost and redone. With no write in that span (files since rewritten) the entry
  stays open.
  """
  entries = record['invocations']
  starts = [_timestamp(entry.get('started')) for entry in entries] + [now]
  writes = _write_times(workdir)
  for entry, start, next_start in zip(entries, starts, starts[1:]):
    if 'finished' in entry or start is None or next_start is None:
      continue
    inside = [t for t in writes if start <= t < next_start]
    if inside:
      entry.update(finished=_iso(max(inside)), wall_s=round(max(inside) - start, 1),
                   exit='killed without notice (no exit recorded); resumed by the next invocation',
                   note='recorded after the fact: end is its last write to the workdir')


class RunRecorder:
  """Appends this invocation to `<workdir>/run.json` at the start and completes it at the end.

  Only process 0 writes. A failure to write the record never stops a run: it is a note, not data.
  """

  def __init__(self, workdir: Path, mode: str, argv: list[str] | None = None):
    self.path = Path(workdir) / RUN_FILE
    self.workdir, self.mode, self.argv = Path(workdir), mode, argv
    self.entry, self.start = None, time.perf_counter()

  def __enter__(self) -> 'RunRecorder':
    self.entry = invocation(self.mode, self.argv)
    self._write(close_killed=True)
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self.entry['finished'] = _iso()
    self.entry['wall_s'] = round(time.perf_counter() - self.start, 1)
    line = ' '.join(str(exc).split())[:300]
    self.entry['exit'] = ('ok' if exc_type is None
                          else f'{exc_type.__name__}: {line}' if line else exc_type.__name__)
    self._write()

  def _write(self, close_killed: bool = False) -> None:
    """Merges this invocation into the file as it is now (another writer may have added to it)."""
    if not console.is_main_process():
      return
    record = read(self.workdir)
    if close_killed:
      _close_unfinished(record, self.workdir, _timestamp(self.entry['started']))
    entries, key = record['invocations'], lambda entry: (entry.get('started'), entry.get('command'))
    mine = next((i for i, e in enumerate(entries) if key(e) == key(self.entry)), len(entries))
    entries[mine:mine + 1] = [self.entry]  # Replaced in place, or appended.
    try:
      storage.atomic_write_text(self.path, json.dumps(record, indent=2) + '\n', '--workdir')
    except storage.StorageError as e:
      console.warn(f'could not write {self.path} ({e}); the run goes on without its record.')
