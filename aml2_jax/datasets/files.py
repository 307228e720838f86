"""Locating, reading, verifying and downloading data files.

A data root has one folder per data set: `<root>/sms_spam/...`, `<root>/fashion_mnist/...`.
`find_data_file` searches, in order:

1. `data_dir` (from the config): a data root, or the data set's folder itself. If it is given,
   the file must be there; the search does not go on.
2. `$AML2_DATA_DIR/<dataset_subdir>` (a data root).
3. The repository's `data/<dataset_subdir>`.
4. `extra_dirs` (e.g. where a system package installs the data set).

Failing all of these it calls `fetch`, which downloads into the repository's `data/`.
"""

from collections.abc import Callable, Sequence
import hashlib
import http.client
import os
from pathlib import Path
import tempfile
import urllib.request
import zipfile
import zlib

import tqdm

from aml2_jax.errors import UserError

ENV_VAR = 'AML2_DATA_DIR'
# The repository's data/ folder (the package sits at the repository root).
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / 'data'

_CHUNK_BYTES = 1 << 16
_TIMEOUT_S = 60
_WHERE = f'set {ENV_VAR} or config.data.dir to a data root with <dataset>/ folders'


def find_data_file(dataset_subdir: str,
                   names: Sequence[str],
                   data_dir: str = '',
                   extra_dirs: Sequence[str | Path] = (),
                   fetch: Callable[[Path], Path] | None = None) -> Path:
  """Returns the first existing file among `names`, searching the folders in the module's order.

  Args:
    dataset_subdir: the data set's folder in a data root, e.g. 'sms_spam'.
    names: alternative file names, preferred first; a folder earlier in the search order wins
      over a name earlier in `names`.
    data_dir: a data root or the data set's folder, from the config; '' to skip.
    extra_dirs: folders searched last.
    fetch: called with `<repo>/data/<dataset_subdir>` when nothing is found; downloads there and
      returns the file's path.

  Raises:
    UserError: `data_dir` is given and lacks the file; `$AML2_DATA_DIR` is not a folder; or
      nothing was found and there is no `fetch`.
  """
  if data_dir:
    root = Path(data_dir).expanduser()
    found = _first_file([root / dataset_subdir, root], names)
    if found is None:
      raise UserError(f'config.data.dir {root}: no {_any_of(names)} in {root / dataset_subdir} '
                      f'or {root}; put the file there or fix config.data.dir')
    return found

  dirs = []
  env_root = os.environ.get(ENV_VAR)
  if env_root:
    # A typo here would otherwise silently fall through to a download.
    if not Path(env_root).expanduser().is_dir():
      raise UserError(f'{ENV_VAR}={env_root} is not a folder; fix it or unset it')
    dirs.append(Path(env_root).expanduser() / dataset_subdir)
  dirs.append(REPO_DATA_DIR / dataset_subdir)
  dirs.extend(Path(d) for d in extra_dirs)
  found = _first_file(dirs, names)
  if found is not None:
    return found
  if fetch is None:
    raise UserError(f'no {_any_of(names)} found in {", ".join(map(str, dirs))}; '
                    f'put the file in one of them or {_WHERE}')
  return fetch(REPO_DATA_DIR / dataset_subdir)


def _first_file(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
  for folder in dirs:
    for name in names:
      if (folder / name).is_file():
        return folder / name
  return None


def _any_of(names: Sequence[str]) -> str:
  return ' or '.join(names)


def read_bytes(path: str | Path) -> bytes:
  """Returns the file's contents; an unreadable file is a UserError naming it."""
  try:
    return Path(path).read_bytes()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror or e}; check the path') from None


def check_sha256(path: Path, content: bytes, expected: str, fix: str) -> None:
  """Raises a UserError naming `path` unless `content` has SHA-256 `expected`.

  Args:
    path: the file `content` came from, for the message.
    content: the bytes to hash (e.g. the decompressed contents of a gzip file).
    expected: lower-case hex digest.
    fix: how to get a good copy, e.g. 'replace it with the original from <url>'.
  """
  if hashlib.sha256(content).hexdigest() != expected:
    raise UserError(f'{path} is corrupted or truncated (SHA-256 mismatch); {fix}')


def download(url: str,
             dest: Path,
             sha256: str,
             extract: Callable[[bytes], bytes] | None = None) -> Path:
  """Downloads `url` to `dest`, showing progress, and returns `dest`.

  The file stored is `extract(downloaded bytes)` (or the downloaded bytes themselves); it is
  written under a temporary name and renamed to `dest` only once its SHA-256 matches, so `dest`
  never holds a partial or wrong file. Downloads are held in memory: the files here are < 30 MB.

  Args:
    url: where to download from.
    dest: `<data root>/<dataset_subdir>/<file name>`.
    sha256: expected lower-case hex SHA-256 of the stored file.
    extract: maps the downloaded bytes to the file to store, e.g. unzips one member.

  Raises:
    UserError: no network, the download is not what was expected, or `dest` is not writable.
  """
  try:
    raw = _fetch(url, dest.name)
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
  _write_atomically(dest, content)
  return dest


def _fetch(url: str, label: str) -> bytes:
  """Returns the body at `url`, with a progress bar (bytes, rate, ETA) on stderr."""
  with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
    size = int(response.headers.get('Content-Length') or 0) or None
    chunks = []
    with tqdm.tqdm(total=size, unit='B', unit_scale=True, unit_divisor=1024,
                   desc=f'Downloading {label}') as bar:
      while chunk := response.read(_CHUNK_BYTES):
        chunks.append(chunk)
        bar.update(len(chunk))
  return b''.join(chunks)


def _write_atomically(dest: Path, content: bytes) -> None:
  tmp_name = None
  try:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f'.{dest.name}.', suffix='.part',
                                     delete=False) as tmp:
      tmp_name = tmp.name
      tmp.write(content)
    os.replace(tmp_name, dest)
  except OSError as e:
    if tmp_name:
      Path(tmp_name).unlink(missing_ok=True)
    raise UserError(f'cannot write {dest}: {e.strerror or e}; make {dest.parent} writable '
                    f'or {_WHERE}') from None
