"""Tests for aml2_jax.fmnist_data, on tiny files written here and on the real data set."""

import gzip
import hashlib
import io
import os
from pathlib import Path
import urllib.error
import urllib.request

import numpy as np
import pytest

from aml2_jax.datasets import files as data_files
from aml2_jax.datasets import fashion_mnist as fmnist_data
from aml2_jax.errors import UserError

IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
             't10k-labels-idx1-ubyte')
_rng = np.random.default_rng(0)
# Tiny stand-ins for the four arrays, in the order of IDX_NAMES.
TINY = (_rng.integers(0, 256, (20, 28, 28), np.uint8), np.arange(20, dtype=np.uint8) % 10,
        _rng.integers(0, 256, (10, 28, 28), np.uint8), np.arange(10, dtype=np.uint8)[::-1].copy())


def _real_fmnist_dir() -> Path | None:
  """A folder holding the real gzipped IDX files: under $AML2_DATA_DIR, repo data/ or Debian's."""
  for root in (os.environ.get(data_files.ENV_VAR), data_files.REPO_DATA_DIR):
    if root and (Path(root) / 'fashion_mnist' / 'train-labels-idx1-ubyte.gz').is_file():
      return Path(root) / 'fashion_mnist'
  if (fmnist_data.DEBIAN_DIR / 'train-labels-idx1-ubyte.gz').is_file():
    return fmnist_data.DEBIAN_DIR
  return None


REAL_DIR = _real_fmnist_dir()
needs_real = pytest.mark.skipif(
    REAL_DIR is None, reason='real Fashion-MNIST not found: set AML2_DATA_DIR to a data root with '
    'fashion_mnist/*-idx*-ubyte.gz (e.g. /path/to/data)')


@pytest.fixture(name='real', scope='module')
def fixture_real():
  return fmnist_data.load_fashion_mnist(str(REAL_DIR))


@pytest.fixture(name='repo_data')
def fixture_repo_data(monkeypatch, tmp_path):
  """Isolates the lookup from this machine: no $AML2_DATA_DIR, repo data/ and Debian in tmp."""
  monkeypatch.delenv(data_files.ENV_VAR, raising=False)
  repo_data = tmp_path / 'repo_data'
  monkeypatch.setattr(data_files, 'REPO_DATA_DIR', repo_data)
  monkeypatch.setattr(fmnist_data, 'DEBIAN_DIR', tmp_path / 'debian')
  return repo_data


@pytest.fixture(name='tiny_sums')
def fixture_tiny_sums(monkeypatch):
  """Makes the tiny IDX files the ones with the 'known' checksums."""
  sums = {name: hashlib.sha256(_idx(a)).hexdigest() for name, a in zip(IDX_NAMES, TINY)}
  monkeypatch.setattr(fmnist_data, 'IDX_SHA256', sums)


def _idx(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
  header = bytes([0, 0, dtype_code, array.ndim]) + np.array(array.shape, '>u4').tobytes()
  return header + array.tobytes()


def _write(path: Path, content: bytes) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content)
  return path


def _write_tiny_idx(folder: Path, gzipped=(True, False, False, True), arrays=TINY) -> None:
  for name, array, gz in zip(IDX_NAMES, arrays, gzipped):
    raw = _idx(array)
    _write(folder / (name + '.gz' if gz else name), gzip.compress(raw) if gz else raw)


def _csv(images: np.ndarray, labels: np.ndarray) -> bytes:
  header = ','.join(['label'] + [f'pixel{i}' for i in range(1, 785)])
  rows = [','.join(map(str, [l, *im.ravel()])) for im, l in zip(images, labels)]
  return '\n'.join([header, *rows, '']).encode()


def _error(call, path: Path) -> str:
  with pytest.raises(UserError) as excinfo:
    call()
  message = str(excinfo.value)
  assert '\n' not in message and str(path) in message
  return message


@needs_real
def test_real_data(real):
  assert real.train_images.shape == (60000, 28, 28) and real.train_images.dtype == np.uint8
  assert real.test_images.shape == (10000, 28, 28) and real.test_images.dtype == np.uint8
  assert real.train_labels.dtype == np.int32 and real.test_labels.dtype == np.int32
  assert np.bincount(real.train_labels).tolist() == [6000] * 10
  assert np.bincount(real.test_labels).tolist() == [1000] * 10
  assert fmnist_data.CLASS_NAMES[real.train_labels[0]] == 'Ankle boot'
  assert real.train_images.max() == 255 and real.train_images.min() == 0


@needs_real
def test_truncated_real_gzip(tmp_path):
  raw = (REAL_DIR / 'train-labels-idx1-ubyte.gz').read_bytes()
  path = _write(tmp_path / 'train-labels-idx1-ubyte.gz', raw[:len(raw) // 2])
  assert 'truncated or corrupted gzip' in _error(lambda: fmnist_data.read_idx(path), path)


def test_class_names():
  assert len(fmnist_data.CLASS_NAMES) == 10
  assert fmnist_data.CLASS_NAMES[0] == 'T-shirt/top' and fmnist_data.CLASS_NAMES[9] == 'Ankle boot'


def test_read_idx_plain_and_gzipped(tmp_path):
  plain = _write(tmp_path / 'images', _idx(TINY[0]))
  gz = _write(tmp_path / 'images.gz', gzip.compress(_idx(TINY[0])))
  assert np.array_equal(fmnist_data.read_idx(plain), TINY[0])
  assert np.array_equal(fmnist_data.read_idx(gz), TINY[0])
  labels = fmnist_data.read_idx(_write(tmp_path / 'labels', _idx(TINY[1])))
  assert labels.shape == (20,) and labels.dtype == np.uint8


def test_read_idx_truncated_gzip(tmp_path):
  path = _write(tmp_path / 'images.gz', gzip.compress(_idx(TINY[0]))[:-30])
  assert 'truncated or corrupted gzip' in _error(lambda: fmnist_data.read_idx(path), path)


def test_read_idx_short_data(tmp_path):
  path = _write(tmp_path / 'images', _idx(TINY[0])[:-1])
  message = _error(lambda: fmnist_data.read_idx(path), path)
  assert f'has {20 * 784 - 1} data bytes' in message and 'says 15680' in message


def test_read_idx_trailing_data(tmp_path):
  path = _write(tmp_path / 'labels', _idx(TINY[1]) + b'\0')
  assert 'has 21 data bytes' in _error(lambda: fmnist_data.read_idx(path), path)


def test_read_idx_wrong_magic(tmp_path):
  path = _write(tmp_path / 'images', b'PK\x03\x04' + bytes(100))
  assert 'not an IDX file' in _error(lambda: fmnist_data.read_idx(path), path)


def test_read_idx_wrong_dtype(tmp_path):
  path = _write(tmp_path / 'floats', _idx(np.zeros(3, np.float32), dtype_code=0x0D))
  assert 'data type 0x0d' in _error(lambda: fmnist_data.read_idx(path), path)


def test_load_tiny_idx(repo_data, tiny_sums, tmp_path):
  del repo_data, tiny_sums
  _write_tiny_idx(tmp_path / 'fashion_mnist')
  data = fmnist_data.load_fashion_mnist(str(tmp_path))
  for got, want in zip([data.train_images, data.train_labels, data.test_images,
                        data.test_labels], TINY):
    assert np.array_equal(got, want) and got.shape == want.shape
  assert data.train_labels.dtype == np.int32 and data.train_images.dtype == np.uint8


def test_load_from_debian_folder(repo_data, tiny_sums, tmp_path):
  del repo_data, tiny_sums
  _write_tiny_idx(tmp_path / 'debian', gzipped=(True,) * 4)
  assert np.array_equal(fmnist_data.load_fashion_mnist().test_labels, TINY[3])


def test_canonical_names_are_checksummed(tmp_path):
  _write_tiny_idx(tmp_path)
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  message = _error(lambda: fmnist_data.load_fashion_mnist(str(tmp_path)), path)
  assert 'corrupted or truncated (SHA-256 mismatch)' in message


def test_missing_sibling_file(tmp_path):
  _write(tmp_path / 'train-images-idx3-ubyte', _idx(TINY[0]))
  message = _error(lambda: fmnist_data.load_fashion_mnist(str(tmp_path)), tmp_path)
  assert 'no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz' in message


def test_label_out_of_range(monkeypatch, tmp_path):
  arrays = list(TINY)
  arrays[1] = TINY[1].copy()
  arrays[1][3] = 10
  monkeypatch.setattr(fmnist_data, 'IDX_SHA256', {
      name: hashlib.sha256(_idx(a)).hexdigest() for name, a in zip(IDX_NAMES, arrays)})
  _write_tiny_idx(tmp_path, arrays=arrays)
  message = _error(lambda: fmnist_data.load_fashion_mnist(str(tmp_path)),
                   tmp_path / 'train-labels-idx1-ubyte')
  assert 'label 10 is out of range' in message


def test_image_label_count_mismatch(monkeypatch, tmp_path):
  arrays = list(TINY)
  arrays[3] = TINY[3][:9]
  monkeypatch.setattr(fmnist_data, 'IDX_SHA256', {
      name: hashlib.sha256(_idx(a)).hexdigest() for name, a in zip(IDX_NAMES, arrays)})
  _write_tiny_idx(tmp_path, arrays=arrays)
  message = _error(lambda: fmnist_data.load_fashion_mnist(str(tmp_path)),
                   tmp_path / 't10k-labels-idx1-ubyte.gz')
  assert 'has 10 images' in message


def test_read_kaggle_csv(tmp_path):
  images, labels = fmnist_data.read_fmnist_csv(_write(tmp_path / 'a.csv', _csv(*TINY[:2])))
  assert np.array_equal(images, TINY[0]) and images.dtype == np.uint8
  assert np.array_equal(labels, TINY[1]) and labels.dtype == np.int32


def test_load_kaggle_csv(repo_data, tmp_path):
  del repo_data
  _write(tmp_path / 'fashion_mnist' / 'fashion-mnist_train.csv', _csv(*TINY[:2]))
  _write(tmp_path / 'fashion_mnist' / 'fashion-mnist_test.csv', _csv(*TINY[2:]))
  data = fmnist_data.load_fashion_mnist(str(tmp_path))
  assert np.array_equal(data.test_images, TINY[2]) and np.array_equal(data.test_labels, TINY[3])
  assert data.train_images.shape == (20, 28, 28)


def test_kaggle_csv_wrong_header(tmp_path):
  path = _write(tmp_path / 'a.csv', _csv(*TINY[:2]).replace(b'pixel784', b'pixel785', 1))
  assert 'header must be label,pixel1' in _error(lambda: fmnist_data.read_fmnist_csv(path), path)


def test_kaggle_csv_pixel_out_of_range(tmp_path):
  images = TINY[0].astype(np.int64)
  images[2, 5, 5] = 256
  path = _write(tmp_path / 'a.csv', _csv(images, TINY[1]))
  message = _error(lambda: fmnist_data.read_fmnist_csv(path), path)
  assert 'must be in 0..255' in message and '256' in message


def test_kaggle_csv_label_out_of_range(tmp_path):
  labels = TINY[1].astype(np.int64)
  labels[4] = -1
  path = _write(tmp_path / 'a.csv', _csv(TINY[0], labels))
  assert 'label -1 is out of range' in _error(lambda: fmnist_data.read_fmnist_csv(path), path)


def test_kaggle_csv_not_integers(tmp_path):
  path = _write(tmp_path / 'a.csv', _csv(*TINY[:2]).replace(b'\n3,', b'\n3.5,', 1))
  assert 'cannot read it' in _error(lambda: fmnist_data.read_fmnist_csv(path), path)


class FakeResponse(io.BytesIO):
  """Stands in for urlopen's response: a body and a Content-Length header."""

  def __init__(self, body: bytes):
    super().__init__(body)
    self.headers = {'Content-Length': str(len(body))}


def test_download_when_missing(repo_data, tiny_sums, monkeypatch):
  del tiny_sums
  bodies = {f'{fmnist_data.FMNIST_URL}{name}.gz': gzip.compress(_idx(a))
            for name, a in zip(IDX_NAMES, TINY)}
  monkeypatch.setattr(urllib.request, 'urlopen', lambda url, timeout: FakeResponse(bodies[url]))
  data = fmnist_data.load_fashion_mnist()
  assert np.array_equal(data.train_images, TINY[0])
  # Stored decompressed, as verified.
  stored = sorted(p.name for p in (repo_data / 'fashion_mnist').iterdir())
  assert stored == sorted(IDX_NAMES)


def test_missing_and_offline(repo_data, monkeypatch):
  def offline(url, timeout):
    raise urllib.error.URLError('network is unreachable')
  monkeypatch.setattr(urllib.request, 'urlopen', offline)
  with pytest.raises(UserError) as excinfo:
    fmnist_data.load_fashion_mnist()
  message = str(excinfo.value)
  assert 'no local copy of train-images-idx3-ubyte' in message
  assert fmnist_data.FMNIST_URL in message and str(repo_data / 'fashion_mnist') in message
