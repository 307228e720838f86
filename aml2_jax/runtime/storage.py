"""Writing files so that a storage fault never costs what is already saved, and one clear line.

A write can fail for reasons of the disk rather than of the code: the disk is full (ENOSPC), a
quota is reached (EDQUOT), the file system is read-only (EROFS), the disk fails (EIO), or the
location is not writable (EACCES). Such a failure becomes a `StorageError` (a `UserError`, so the
launcher prints one line and exits 2) naming the path, the error and the fix.

- `writing(path)`: a context that turns an `OSError` of the writes inside it into `StorageError`;
  `disk_errors()` does it for disk errors anywhere (the launcher's safety net).
- `atomic_write_text` (`jsonio`'s, on process 0, its errors as `StorageError`) / `atomic_save`: a
  temporary file in the same folder, fsync, then rename, so a kill or a full disk never leaves
  half a file under the real name.
- `repair_jsonl`: drops the torn last line of a JSON-lines file (`jsonio.read_jsonl` skips it).
- `probe_writable`: the one check that a folder can be written.
- `as_storage_error`: finds the OS error inside what a library raised (orbax and tensorstore wrap
  it in a ValueError that only carries `[os_error_code=...]` in its text).

`runtime.faults` quiets orbax's noise after a failed save and holds the tests' crash points;
`runtime.workdir.prepare_workdir_for_mode` lets read-only modes run on a read-only disk.
"""

import contextlib
import errno as errno_lib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator

from aml2_jax import console, jsonio
from aml2_jax.runtime import faults
from aml2_jax.errors import UserError
from aml2_jax.jsonio import read_json_object, read_jsonl  # noqa: F401 (the readers, here too)

# What each error means for the user, and what fixes it.
_ADVICE = {
    errno_lib.ENOSPC: 'free space on that disk or choose another location',
    errno_lib.EDQUOT: 'free space within your quota or choose another location',
    errno_lib.EROFS: 'the file system is read-only: choose a writable location',
    errno_lib.EIO: 'the disk reported an I/O error: check it (dmesg) or choose another location',
    errno_lib.EACCES: 'choose a location you can write to',
    errno_lib.EPERM: 'choose a location you can write to',
}


class StorageError(UserError):
  """A write failed for a reason of the disk; the message names the path, the error and the fix.

  Attributes:
    path: what could not be written.
    errno: the OS error number (e.g. `errno.ENOSPC`), or None when unknown.
  """

  def __init__(self, path: os.PathLike | str, code: int | None, detail: str = '',
               where: str = 'location', note: str = ''):
    self.path, self.errno = Path(path), code
    reason = os.strerror(code) if code else (detail or 'write failed')
    name = f' ({errno_lib.errorcode[code]})' if code in errno_lib.errorcode else ''
    advice = _ADVICE.get(code, 'choose another location').replace('location', where)
    text = f'cannot write {path}: {reason}{name}; {advice}' + (f'; {note}' if note else '')
    super().__init__(text if text.endswith('.') else text + '.')


def os_error_code(error: BaseException) -> int | None:
  """The OS error number behind `error` (or its causes), or None if it is not an OS error.

  Orbax raises the `OSError` of its own file operations, and tensorstore's failures come back as
  a `ValueError` whose text ends in `[os_error_code='28']`.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    match = re.search(r"os_error_code='?(\d+)", str(error))
    if match:
      return int(match.group(1))
    if 'No space left on device' in str(error):
      return errno_lib.ENOSPC
    error = error.__cause__ or error.__context__
  return None


def as_storage_error(error: BaseException, path: os.PathLike | str, where: str = 'location',
                     note: str = '') -> StorageError | None:
  """`error` as a `StorageError` about `path` if an OS error lies behind it, else None."""
  code = os_error_code(error)
  if code is None:
    return None
  return StorageError(path, code, where=where, note=note)


@contextlib.contextmanager
def writing(path: os.PathLike | str, where: str = 'location', note: str = '') -> Iterator[None]:
  """Turns an `OSError` raised inside into a `StorageError` naming the file the error names (else
  `path`) and the fix for `where` (e.g. '--workdir', '--out')."""
  try:
    yield
  except OSError as e:
    named = e.filename if isinstance(e.filename, str) else path
    raise StorageError(named, e.errno, e.strerror or str(e), where, note) from e


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
  """The launcher's safety net: an `OSError` of the disk (full, quota, read-only, I/O error,
  permission) raised anywhere inside, by a write no other code wrapped, becomes a `StorageError`
  naming the file. Other errors pass unchanged."""
  try:
    yield
  except OSError as e:
    if e.errno not in _ADVICE:
      raise
    named = e.filename if isinstance(e.filename, str) else 'a file'
    raise StorageError(named, e.errno, e.strerror or str(e), '--workdir') from e


def _tmp_path(path: Path) -> Path:
  return path.with_name(f'.{path.name}.tmp-{os.getpid()}')


def atomic_save(path: os.PathLike | str, write: Callable[[Path], None],
                where: str = 'location') -> None:
  """Calls `write(tmp)` for a temporary file beside `path`, then renames it to `path`.

  The rename is atomic on POSIX file systems: readers see the old file or the new one, never
  half of either; a failure (or kill) leaves at most the temporary file, removed on failure.
  In a multi-process run only process 0 writes (the others computed the same content).
  """
  if not console.is_main_process():
    return
  path = Path(path)
  tmp = _tmp_path(path)
  with writing(path, where):
    try:
      write(tmp)
      faults.crash_point(f'write:{path}')  # Written but not renamed: the old file must stay whole.
      tmp.replace(path)
    except BaseException:
      tmp.unlink(missing_ok=True)
      raise


def atomic_write_text(path: os.PathLike | str, text: str, where: str = 'location') -> None:
  """Writes UTF-8 `text` to `path` atomically (`jsonio.atomic_write_text`), on process 0 only."""
  if console.is_main_process():
    with writing(path, where):
      jsonio.atomic_write_text(path, text)


def repair_jsonl(path: os.PathLike | str) -> int:
  """Drops a torn last line of a JSON-lines file (a write cut short); returns the bytes dropped.

  A line is torn when it lacks its newline or does not parse. Earlier lines are not touched: a
  kill or a full disk can only cut the line being written, which is the last.
  """
  path = Path(path)
  if not path.is_file():
    return 0
  data = path.read_bytes()
  keep = len(data)
  if data and not data.endswith(b'\n'):
    keep = data.rfind(b'\n') + 1
  elif data:
    start = data.rfind(b'\n', 0, len(data) - 1) + 1
    if not _parses(data[start:]):
      keep = start
  if keep < len(data):
    with open(path, 'r+b') as f:
      f.truncate(keep)
  return len(data) - keep


def _parses(line: bytes) -> bool:
  try:
    json.loads(line)
    return True
  except ValueError:
    return False


def probe_writable(folder: os.PathLike | str, where: str = 'location', note: str = '') -> None:
  """Writes and removes a small file in `folder`; raises `StorageError` if the disk refuses.

  Orbax creates a checkpoint's folder in a background thread, and when that fails its other
  threads wait minutes for a signal that never comes; a probe first turns a read-only, full or
  forbidden folder into an error at once.
  """
  probe = Path(folder) / f'.write_probe-{os.getpid()}'
  try:
    with open(probe, 'wb') as f:
      f.write(b'\0' * 512)
    probe.unlink()
  except OSError as e:
    with contextlib.suppress(OSError):
      probe.unlink(missing_ok=True)
    raise StorageError(folder, e.errno, e.strerror or str(e), where, note) from e
