"""The project's one JSON reader and writer, without JAX (the report imports it).

Writes raise a disk's `OSError` as is; `runtime.storage` turns it into one line for the user.
"""

import json
import os
from pathlib import Path
from typing import Callable, Mapping

from aml2_jax.errors import UserError
from aml2_jax.runtime import faults  # Standard library only: no JAX.


def read_json_object(path: os.PathLike | str) -> dict:
  """The JSON object in `path`, or {} when it is missing, unreadable or not an object."""
  try:
    record = json.loads(Path(path).read_text(encoding='utf-8'))
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def read_jsonl(path: os.PathLike | str) -> list[dict]:
  """The records of a JSON-lines file; a torn last line (a write cut short) is dropped."""
  lines = Path(path).read_text(encoding='utf-8').splitlines()
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except ValueError as e:
      if i < len(lines) - 1:
        raise UserError(f'{path}:{i + 1} is not a JSON record ({e}); the file was edited or '
                        'damaged: delete that line.') from None
  return records


def atomic_write(path: os.PathLike | str, write: Callable[[Path], None]) -> None:
  """Calls `write(tmp)` for a temporary file beside `path`, then renames it to `path`.

  The rename is atomic on POSIX: a reader, a kill or a full disk never leaves half a file.
  """
  path = Path(path)
  tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
  try:
    write(tmp)
    faults.crash_point(f'write:{path}')  # Written but not renamed: the old file must stay whole.
    tmp.replace(path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
  """Writes UTF-8 `text` to `path` through a temporary file, fsync and a rename."""
  def write(tmp: Path) -> None:
    with open(tmp, 'wb') as f:
      f.write(text.encode('utf-8'))
      f.flush()
      os.fsync(f.fileno())  # On disk before the rename makes it the real file.
  atomic_write(path, write)


def write_json(path: os.PathLike | str, record: Mapping) -> None:
  """Writes `record` as indented JSON with sorted keys, atomically."""
  atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + '\n')
