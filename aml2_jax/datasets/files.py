"""Finding, reading, verifying and downloading data files (lookup order: docs/data.md)."""

from collections.abc import Callable, Sequence
import hashlib
import http.client
import os
from pathlib import Path
import urllib.request
import zipfile
import zlib

import tqdm

from aml2_jax import jsonio
from aml2_jax.errors import UserError

ENV_VAR = 'AML2_DATA_DIR'
# The repository's data/ folder (the package sits at the repository root).
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / 'data'

_CHUNK_BYTES = 1 << 16
_TIMEOUT_S = 60
_WHERE = f'set {ENV_VAR} or config.data.dir to a data root with <dataset>/ folders'


def find_data_file(dataset_subdir: str, names: Sequence[str], data_dir: str = '',
                   extra_dirs: Sequence[str | Path] = (),
                   fetch: Callable[[Path], Path] | None = None) -> Path:
  """The first of `names` (preferred first) in the folders of docs/data.md, an earlier folder
  winning; else `fetch(<repository data/<dataset_subdir>>)`, or without `fetch` a UserError."""
  names_text = ' or '.join(names)
  if data_dir:  # Then the file must be there.
    root = Path(data_dir).expanduser()
    if found := first_file([root / dataset_subdir, root], names):
      return found
    raise UserError(f'config.data.dir {root}: no {names_text} in {root / dataset_subdir} '
                    f'or {root}; put the file there or fix config.data.dir')
  env_root = os.environ.get(ENV_VAR)
  # A typo here would otherwise silently fall through to a download.
  if env_root and not Path(env_root).expanduser().is_dir():
    raise UserError(f'{ENV_VAR}={env_root} is not a folder; fix it or unset it')
  dirs = [Path(env_root).expanduser() / dataset_subdir] if env_root else []
  dirs += [REPO_DATA_DIR / dataset_subdir, *map(Path, extra_dirs)]
  if found := first_file(dirs, names):
    return found
  if fetch is None:
    raise UserError(f'no {names_text} found in {", ".join(map(str, dirs))}; '
                    f'put the file in one of them or {_WHERE}')
  return fetch(REPO_DATA_DIR / dataset_subdir)


def first_file(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
  """The first existing `folder / name`, by folder then by name; None if there is none."""
  return next((d / n for d in dirs for n in names if (d / n).is_file()), None)


def read_bytes(path: str | Path) -> bytes:
  """Returns the file's contents; an unreadable file is a UserError naming it."""
  try:
    return Path(path).read_bytes()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}; check the path') from None


def check_sha256(path: Path, content: bytes, expected: str, fix: str) -> None:
  """Raises a UserError naming `path`, ending in `fix`, unless `content` has SHA-256 `expected`."""
  if hashlib.sha256(content).hexdigest() != expected:
    raise UserError(f'{path} is corrupted or truncated (SHA-256 mismatch); {fix}')


def download(url: str, dest: Path, sha256: str,
             extract: Callable[[bytes], bytes] | None = None) -> Path:
  """Downloads `url` and stores `extract(body)` (or the body) at `dest`, returned, only once its
  SHA-256 matches, atomically. Held in memory: the files here are < 30 MB."""
  try:  # With a progress bar (bytes, rate, ETA) on stderr.
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
      size = int(response.headers.get('Content-Length') or 0) or None
      with tqdm.tqdm.wrapattr(response, 'read', size, desc=f'Downloading {dest.name}') as body:
        raw = b''.join(iter(lambda: body.read(_CHUNK_BYTES), b''))
  except (OSError, http.client.HTTPException) as e:
    reason = str(getattr(e, 'reason', e)).replace('\n', ' ')
    raise UserError(f'no local copy of {dest.name} and downloading {url} failed ({reason}); '
                    f'put the file in {dest.parent}/ or in $AML2_DATA_DIR/{dest.parent.name}/ '
                    'or in the folder config.data.dir names') from None
  try:
    content = extract(raw) if extract else raw
  except (OSError, EOFError, KeyError, ValueError, zlib.error, zipfile.BadZipFile) as e:
    raise UserError(f'downloaded {url} but could not extract {dest.name} from it ({e}); '
                    f'retry later or put the file at {dest}') from None
  actual = hashlib.sha256(content).hexdigest()
  if actual != sha256:
    raise UserError(f'downloaded {url} but {dest.name} has SHA-256 {actual}, expected {sha256}; '
                    f'nothing was saved: retry later or put a good copy at {dest}')
  try:
    dest.parent.mkdir(parents=True, exist_ok=True)
    jsonio.atomic_write(dest, lambda tmp: tmp.write_bytes(content))
  except OSError as e:
    raise UserError(f'cannot write {dest}: {e.strerror or e}; make {dest.parent} writable '
                    f'or {_WHERE}') from None
  return dest
