"""`<workdir>/run.json`: what ran, from which code, where, with which libraries, and for how long.

Every invocation of `launch.py` that writes to its workdir appends one record (a resumed run has
several): the command line, the git commit (and whether the tree had uncommitted changes), the
start and end time (UTC), wall seconds, how it ended, the machine (CPU model, cores, memory,
accelerator kind and count) and the versions of the libraries that decide the numbers. Results
published under `results/` carry this file, so each figure names its run.
"""

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
LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'ml-collections', 'numpy',
             'scipy')


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def command_line(argv: list[str] | None = None) -> str:
  """The command as a user would type it again (`python launch.py ...`)."""
  argv = sys.argv if argv is None else argv
  return shlex.join(['python', Path(argv[0]).name if argv[0].endswith('launch.py') else argv[0],
                     *argv[1:]])


def git_state(repo: Path | None = None) -> dict:
  """{'commit': sha or None, 'dirty': bool or None} of the repository holding this package."""
  repo = repo or Path(__file__).resolve().parents[2]

  def git(*args: str) -> str | None:
    try:
      out = subprocess.run(['git', *args], cwd=repo, capture_output=True, text=True, timeout=10)
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


def _memory_gib() -> float | None:
  try:
    pages, page_size = os.sysconf('SC_PHYS_PAGES'), os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError, AttributeError):
    return None
  return round(pages * page_size / 2**30, 1)


def machine() -> dict:
  """The machine of this process: CPU, cores, memory, and JAX's default backend and devices."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {'cpu': cpu_model(), 'cores': os.cpu_count(), 'memory_gib': _memory_gib(),
          'os': f'{platform.system()} {platform.release()}',
          'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
          'num_devices': len(devices), 'num_processes': jax.process_count()}


def versions() -> dict:
  """Python's and the pinned libraries' versions."""
  found = {'python': platform.python_version()}
  for name in LIBRARIES:
    try:
      found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      found[name] = None
  return found


def invocation(mode: str, argv: list[str] | None = None) -> dict:
  """A fresh record of this invocation (completed by `RunRecorder.finish`)."""
  return {'command': command_line(argv), 'mode': mode, 'git': git_state(), 'started': _now(),
          'machine': machine(), 'versions': versions()}


def read(workdir: Path) -> dict:
  """The workdir's run record ({'invocations': []} when there is none or it is unreadable)."""
  record = jsonio.read_json_object(Path(workdir) / RUN_FILE)
  return record if isinstance(record.get('invocations'), list) else {'invocations': []}


# What `results.json` says of training (its wall time, the step it resumed from): an `eval`
# that rewrites the file keeps them.
TRAINING_FACTS = ('train_wall_s', 'resumed_from_step')


def training_facts(run_dir: Path) -> dict:
  """The `TRAINING_FACTS` in `<run_dir>/results.json` ({} when there is none)."""
  results = jsonio.read_json_object(Path(run_dir) / 'results.json')
  return {k: v for k, v in results.items() if k in TRAINING_FACTS}


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


def close_unfinished(record: dict, workdir: Path, now: float) -> None:
  """Completes invocations that were killed without notice (SIGKILL, a lost machine).

  Such an entry has a start but no end. Its end is taken as the workdir's newest write between its
  start and the next invocation's start: a lower bound, since work after its last write was lost
  and redone. An entry with no write in that span (files since rewritten) stays open.
  """
  entries = record['invocations']
  starts = [_timestamp(entry.get('started')) for entry in entries] + [now]
  writes = _write_times(workdir)
  for entry, start, next_start in zip(entries, starts, starts[1:]):
    if 'finished' in entry or start is None or next_start is None:
      continue
    inside = [t for t in writes if start <= t < next_start]
    if not inside:
      continue
    end = max(inside)
    entry.update(
        finished=datetime.datetime.fromtimestamp(end, datetime.timezone.utc).isoformat(
            timespec='seconds'),
        wall_s=round(end - start, 1),
        exit='killed without notice (no exit recorded); resumed by the next invocation',
        note='recorded after the fact: end is its last write to the workdir')


def _timestamp(text: str | None) -> float | None:
  try:
    return datetime.datetime.fromisoformat(text).timestamp()
  except (TypeError, ValueError):
    return None


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
    self.entry['finished'] = _now()
    self.entry['wall_s'] = round(time.perf_counter() - self.start, 1)
    if exc_type is None:
      self.entry['exit'] = 'ok'
    else:
      line = ' '.join(str(exc).split())[:300]
      self.entry['exit'] = f'{exc_type.__name__}: {line}' if line else exc_type.__name__
    self._write()

  def _write(self, close_killed: bool = False) -> None:
    """Merges this invocation into the file as it is now (another writer may have added to it)."""
    if not console.is_main_process():
      return
    record = read(self.workdir)
    if close_killed:
      close_unfinished(record, self.workdir, _timestamp(self.entry['started']))
    mine = [i for i, entry in enumerate(record['invocations'])
            if (entry.get('started'), entry.get('command')) == (self.entry['started'],
                                                                self.entry['command'])]
    if mine:
      record['invocations'][mine[0]] = self.entry
    else:
      record['invocations'].append(self.entry)
    try:
      storage.atomic_write_text(self.path, json.dumps(record, indent=2) + '\n', '--workdir')
    except storage.StorageError as e:
      console.warn(f'could not write {self.path} ({e}); the run goes on without its record.')
