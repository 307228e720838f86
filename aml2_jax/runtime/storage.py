"""Writes whose disk faults become one line (`StorageError`) and never cost what is saved.

The faults, their messages and the atomic-write rule: docs/reliability.md.
"""

import contextlib
import errno as errno_lib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from aml2_jax import console, jsonio
from aml2_jax.errors import UserError

# What each disk error means for the user, and what fixes it.
_ADVICE = {
    errno_lib.ENOSPC: 'free space on that disk or choose another location',
    errno_lib.EDQUOT: 'free space within your quota or choose another location',
    errno_lib.EROFS: 'the file system is read-only: choose a writable location',
    errno_lib.EIO: 'the disk reported an I/O error: check it (dmesg) or choose another location',
    errno_lib.EACCES: 'choose a location you can write to',
    errno_lib.EPERM: 'choose a location you can write to',
}


class StorageError(UserError):
  """A write failed for a reason of the disk: names `path`, the error (`errno`) and the fix."""

  def __init__(self, path: os.PathLike | str, code: int | None, detail: str = '',
               where: str = 'location', note: str = ''):
    self.path, self.errno = Path(path), code
    reason = os.strerror(code) if code else (detail or 'write failed')
    name = f' ({errno_lib.errorcode[code]})' if code in errno_lib.errorcode else ''
    advice = _ADVICE.get(code, 'choose another location').replace('location', where)
    text = f'cannot write {path}: {reason}{name}; {advice}' + (f'; {note}' if note else '')
    super().__init__(text if text.endswith('.') else text + '.')


def as_storage_error(error: BaseException, path: os.PathLike | str, where: str = 'location',
                     note: str = '') -> StorageError | None:
  """`error` as a `StorageError` about `path` if an OS error lies behind it or its causes.

  Tensorstore's failures (under orbax) are a `ValueError` ending in `[os_error_code='28']`.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    match = re.search(r"os_error_code='?(\d+)", str(error))
    if isinstance(error, OSError) and error.errno:
      code = error.errno
    elif match:
      code = int(match.group(1))
    elif 'No space left on device' in str(error):
      code = errno_lib.ENOSPC
    else:
      error = error.__cause__ or error.__context__
      continue
    return StorageError(path, code, where=where, note=note)
  return None


@contextlib.contextmanager
def writing(path: os.PathLike | str, where: str = 'location', note: str = '',
            disk_only: bool = False) -> Iterator[None]:
  """Turns an `OSError` inside (with `disk_only`, only a disk's) into a `StorageError` naming
  the file the error names (else `path`) and the fix for `where` (e.g. '--workdir', '--out')."""
  try:
    yield
  except OSError as e:
    if disk_only and e.errno not in _ADVICE:
      raise
    named = e.filename if isinstance(e.filename, str) else path
    raise StorageError(named, e.errno, e.strerror or str(e), where, note) from e


def disk_errors() -> contextlib.AbstractContextManager[None]:
  """The launcher's safety net for writes no other code wrapped; other errors pass unchanged."""
  return writing('a file', '--workdir', disk_only=True)


def atomic_save(path: os.PathLike | str, write: Callable[[Path], None],
                where: str = 'location') -> None:
  """`jsonio.atomic_write` on process 0 only (the others computed the same content)."""
  if console.is_main_process():
    with writing(path, where):
      jsonio.atomic_write(path, write)


def atomic_write_text(path: os.PathLike | str, text: str, where: str = 'location') -> None:
  """`jsonio.atomic_write_text` on process 0 only."""
  if console.is_main_process():
    with writing(path, where):
      jsonio.atomic_write_text(path, text)


def repair_jsonl(path: os.PathLike | str) -> int:
  """Drops the torn last line (no newline, or not JSON) of a JSON-lines file; returns the bytes
  dropped. Only the last line can be torn: a kill or a full disk cuts the line being written."""
  path = Path(path)
  data = path.read_bytes() if path.is_file() else b''
  last = data.rfind(b'\n', 0, len(data) - 1) + 1
  keep = len(data) if data.endswith(b'\n') and _parses(data[last:]) else last
  if keep < len(data):
    os.truncate(path, keep)
  return len(data) - keep


def _parses(line: bytes) -> bool:
  try:
    json.loads(line)
  except ValueError:
    return False
  return True


def probe_writable(folder: os.PathLike | str, where: str = 'location', note: str = '') -> None:
  """Writes and removes a small file in `folder`: a `StorageError` at once if the disk refuses.

  Orbax creates a checkpoint's folder in a background thread; when that fails, its other threads
  wait minutes for a signal that never comes.
  """
  probe = Path(folder) / f'.write_probe-{os.getpid()}'
  try:
    probe.write_bytes(b'\0' * 512)
    probe.unlink()
  except OSError as e:
    with contextlib.suppress(OSError):
      probe.unlink(missing_ok=True)
    raise StorageError(folder, e.errno, e.strerror or str(e), where, note) from e
