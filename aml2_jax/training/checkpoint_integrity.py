"""Whether a checkpoint step can be used: its files match their manifest (or, without one, orbax's
JSON files parse), and its meta record fits the config by the resume rule (docs/reliability.md)."""

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

from aml2_jax.errors import UserError
from aml2_jax.runtime import storage

MANIFEST = 'aml2_manifest.json'  # In each complete step directory: {path: {bytes, sha256}}.
DAMAGED_SUFFIX = '.damaged'  # A damaged step moved aside: `<step>.damaged` (not a step to orbax).

# What tensorstore, orbax and json say when a step's files cannot be read (not a shape mismatch).
_READ_FAILURES = ('DATA_LOSS', 'OUT_OF_RANGE', 'NOT_FOUND', 'Data corruption', 'Error reading',
                  'Error opening', 'was not found in the checkpoint', 'No such file',
                  'Expecting value', 'Expecting property name', 'Unterminated string',
                  'Invalid control character', 'Extra data', 'Unexpected end')


class DamagedCheckpoint(UserError):
  """A step's files cannot be trusted: corrupted, truncated, missing or unreadable."""

  def __init__(self, directory: Path, step: int, reason: str):
    super().__init__(f'checkpoint step {step} in {directory} is damaged ({reason})')


def write_manifest(step_dir: Path) -> None:
  """Writes `MANIFEST` (every other file's size and SHA-256) into a completed step directory."""
  files = {str(p.relative_to(step_dir)): {'bytes': p.stat().st_size, 'sha256': sha256(p)}
           for p in sorted(step_dir.rglob('*')) if p.is_file() and p.name != MANIFEST}
  text = json.dumps({'files': files}, indent=1) + '\n'
  storage.atomic_write_text(step_dir / MANIFEST, text, '--workdir')


def step_metadata_readable(directory: Path) -> bool:
  """Whether orbax's per-step JSON files that it parses to track a best step all parse."""
  for path in (p for name in ('_CHECKPOINT_METADATA', 'metrics/metrics')
               for p in directory.glob(f'*/{name}')):
    try:
      json.loads(path.read_text())
    except (OSError, ValueError):
      return False
  return True


def verify_step(step_dir: Path) -> str | None:
  """Why the files of a step directory cannot be trusted, or None when they are intact."""
  manifest = step_dir / MANIFEST
  if not manifest.exists():
    return structure_problem(step_dir)
  try:
    files = json.loads(manifest.read_text(encoding='utf-8'))['files']
    expected = {name: (int(f['bytes']), str(f['sha256'])) for name, f in files.items()}
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f'its manifest {MANIFEST} is unreadable: {first_line(e)}'
  for name, (size, digest) in sorted(expected.items()):
    path = step_dir / name
    if not path.is_file():
      return f'{name} is missing'
    try:
      actual = path.stat().st_size
      if actual != size:
        return (f'{name} is truncated: {actual} of {size} bytes' if actual < size else
                f'{name} has {actual} bytes, {size} were saved')
      if sha256(path) != digest:
        return f'{name} is corrupted: its SHA-256 differs from the one saved'
    except OSError as e:
      return f'{name} cannot be read: {e.strerror}'
  return None


def structure_problem(step_dir: Path) -> str | None:
  """For a step without a manifest: whether orbax's JSON files are there and parse."""
  required = [step_dir / '_CHECKPOINT_METADATA']
  for item in sorted(p for p in step_dir.iterdir() if p.is_dir()):
    if (item / 'manifest.ocdbt').exists() or (item / '_METADATA').exists():
      required.append(item / '_METADATA')  # A pytree item.
    elif (item / 'metadata').exists() or item.name == 'meta':
      required.append(item / 'metadata')  # A JSON item.
  for path in required:
    name = path.relative_to(step_dir)
    try:
      json.loads(path.read_bytes())
    except FileNotFoundError:
      return f'{name} is missing'
    except OSError as e:
      return f'{name} cannot be read: {e.strerror}'
    except ValueError as e:
      return f'{name} is not valid JSON: {first_line(e)}'
  return None


def read_failure(error: BaseException) -> BaseException | None:
  """The error in `error`'s chain saying that files could not be read (rather than that they
  do not fit the template), or None. Orbax wraps tensorstore's in a bare `Exception`."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if (isinstance(error, (OSError, json.JSONDecodeError))
        or any(s in str(error) for s in _READ_FAILURES)):
      return error
    error = error.__cause__ or error.__context__
  return None


def reason(error: BaseException, step_dir: Path) -> str:
  """The telling end of a long tensorstore error ('...: ZSTD_decompressStream() failed: Data
  corruption detected'), without its spec dumps, paths relative to the step directory."""
  text = re.split(r"\s\[\w+(?:\[\d+\])?=", first_line(error, 100_000))[0]
  text = re.sub(r'; at (uncompressed )?byte \d+', '', text)
  text = text.replace(f'{step_dir}/', '')
  parts = [p for p in text.split(': ') if p]
  return first_line(': '.join(parts[-2:]) if len(parts) > 2 else text, 300)


def first_line(error: Any, limit: int = 200) -> str:
  lines = str(error).strip().splitlines() or [type(error).__name__]
  return lines[0][:limit]


def sha256(path: Path) -> str:
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


# Checked on resume only: they shaped training, not the model that eval, sample and predict use.
RESUME_ONLY = ('optim', 'num_epochs')


def check_compatible(saved: dict, current: dict, workdir: Path, *, resume: bool = True,
                     keys: Sequence[str] | None = None) -> None:
  """Refuses (`UserError` naming `workdir`) a checkpoint whose meta record `saved` differs from
  `current` on `keys` (default: all) by the rule of docs/reliability.md: for a resume, or
  (`resume=False`) for using the trained model."""
  current = json.loads(json.dumps(current))  # As saved: tuples become lists.
  names = sorted(keys or set(saved) | set(current))
  for key in (k for k in names if resume or k not in RESUME_ONLY):
    there, now = saved.get(key), current.get(key)
    if key in RESUME_ONLY and there is None:
      continue  # Saved before the rule: nothing recorded to hold the resume to.
    if key == 'optim' and isinstance(there, dict) and isinstance(now, dict):
      # A setting added since the save is compared only once saved: its default is the old
      # behaviour, so runs started before it stay resumable.
      now = {k: v for k, v in now.items() if k in there}
    if key == 'num_epochs' and isinstance(there, int) and isinstance(now, int) and now >= there:
      continue  # Training on for longer.
    difference = _first_difference(key, there, now)
    if difference:
      name, there, now = difference
      raise UserError(
          f'the checkpoint in {workdir} was made with a different {name} ({_short(there)} there, '
          f'{_short(now)} now); use another --workdir, or the config that made it'
          + (' (num_epochs may only grow).' if key == 'num_epochs' else '.'))


def _first_difference(name: str, there: Any, now: Any) -> tuple[str, Any, Any] | None:
  """(dotted name, saved value, current value) of the first entry that differs, or None."""
  if isinstance(there, dict) and isinstance(now, dict):
    for key in sorted(set(there) | set(now)):
      found = _first_difference(f'{name}.{key}', there.get(key), now.get(key))
      if found:
        return found
    return None
  return None if there == now else (name, there, now)


def _short(value: Any) -> str:
  text = json.dumps(value, sort_keys=True)
  return text if len(text) <= 120 else text[:117] + '...'
