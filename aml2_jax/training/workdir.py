"""The run directory: creation, the one-live-run lock, and the resolved config file."""

import fcntl
import os
from pathlib import Path

import ml_collections

from aml2_jax import console
from aml2_jax.errors import UserError


def prepare_workdir(path: str) -> Path:
  """Creates `path` if needed and checks that it is writable; returns it absolute."""
  workdir = Path(path).expanduser().absolute()
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f'.write_probe_{os.getpid()}'  # Own name: processes may share a workdir.
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir} ({e.strerror}); '
                    f'choose a writable one with --workdir=DIR.') from e
  return workdir


class WorkdirLock:
  """An exclusive lock on `<workdir>/.lock` held while a run writes there.

  The OS drops the lock when the process dies (even by SIGKILL), so a stale lock never blocks.
  In a multi-process run only process 0 takes it: the others write only their part of each
  checkpoint, and on a shared filesystem they would otherwise refuse each other.
  """

  def __init__(self, workdir: Path):
    self.path = Path(workdir) / '.lock'
    self.file = None

  def __enter__(self) -> 'WorkdirLock':
    if not console.is_main_process():
      return self
    self.file = open(self.path, 'a+')
    try:
      fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      self.file.seek(0)
      owner = self.file.read().strip() or 'another process'
      self.file.close()
      raise UserError(f'workdir {self.path.parent} is in use by a live run ({owner}); wait for it '
                      f'to finish, stop it, or use another --workdir.') from e
    self.file.truncate(0)
    self.file.write(f'pid {os.getpid()}')
    self.file.flush()
    return self

  def __exit__(self, *exc) -> None:
    if self.file is None:
      return
    fcntl.flock(self.file, fcntl.LOCK_UN)
    self.file.close()


def write_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config (after command-line overrides) for the record."""
  (Path(workdir) / 'config.json').write_text(config.to_json_best_effort(indent=2) + '\n')
