"""The run directory: creation, the one-live-run lock, and the resolved config file."""

import fcntl
import json
import os
from pathlib import Path

import ml_collections

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.runtime import storage

# Modes that only read the workdir (they write nowhere, or where --out says).
READ_ONLY_MODES = ('sample', 'predict', 'summary')


def prepare_workdir(path: str, mode: str = 'train') -> Path:
  """`path` absolute, created if needed and checked writable, unless `mode` only reads the
  workdir (so that `sample` and `predict` work on a read-only disk)."""
  workdir = Path(path).expanduser().absolute()
  if mode in READ_ONLY_MODES:
    return workdir
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    storage.probe_writable(workdir)
  except (OSError, storage.StorageError) as e:
    cause = e.__cause__ if isinstance(e, storage.StorageError) else e
    if mode == 'eval' and workdir.is_dir():
      raise UserError(f'cannot write to workdir {workdir} ({cause.strerror}): --mode=eval '
                      'writes results there; copy it to a writable disk and pass that as '
                      '--workdir, or use --mode=sample / --mode=predict, which only read it.'
                      ) from cause
    raise UserError(f'cannot write to workdir {workdir} ({cause.strerror}); '
                    f'choose a writable one with --workdir=DIR.') from cause
  return workdir


class WorkdirLock:
  """An exclusive lock on `<workdir>/.lock` held while a run writes there.

  The OS drops it when the process dies (even by SIGKILL). Only process 0 takes it: the others
  write only their part of each checkpoint, and on a shared disk they would refuse each other.
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
    if self.file is not None:
      fcntl.flock(self.file, fcntl.LOCK_UN)
      self.file.close()


def write_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config (after command-line overrides) to `config.json`, atomically."""
  record = json.loads(config.to_json_best_effort())
  storage.atomic_write_text(Path(workdir) / 'config.json', json.dumps(record, indent=2) + '\n',
                            '--workdir')
