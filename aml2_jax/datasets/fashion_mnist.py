"""Fashion-MNIST: reading IDX (gzipped or plain) or Kaggle CSV files, with checks (docs/data.md)."""

import dataclasses
import gzip
from pathlib import Path
import zlib

import numpy as np

from aml2_jax.datasets import files as data_files
from aml2_jax.errors import UserError

SUBDIR = 'fashion_mnist'
# Where Debian's package dataset-fashion-mnist installs the gzipped IDX files.
DEBIAN_DIR = Path('/usr/share/datasets/fashion-mnist')
FMNIST_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
# Of the decompressed IDX files: gzip levels differ between sources.
IDX_SHA256 = {
    'train-images-idx3-ubyte': 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
    'train-labels-idx1-ubyte': 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
    't10k-images-idx3-ubyte': '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
    't10k-labels-idx1-ubyte': '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
}
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
               'Sneaker', 'Bag', 'Ankle boot')

_IDX_NAMES = tuple(IDX_SHA256)  # train images, train labels, test images, test labels.
_CSV_NAMES = ('fashion-mnist_train.csv', 'fashion-mnist_test.csv')
_IMAGE_SHAPE = (28, 28)


@dataclasses.dataclass(frozen=True, eq=False)
class FashionMnist:
  """Images uint8 [num, 28, 28], labels int32 [num] in 0..9 (CLASS_NAMES); may be read-only."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  def head(self, num_train: int = 0, num_test: int = 0) -> 'FashionMnist':
    """The first `num_train` training and `num_test` test examples (0 = all); for smoke runs."""
    train, test = slice(num_train or None), slice(num_test or None)
    return FashionMnist(self.train_images[train], self.train_labels[train],
                        self.test_images[test], self.test_labels[test])


def validation_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Sorted indices of a class-stratified random subset of `size` of the training examples."""
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  _, chosen = train_test_split(np.arange(len(labels)), test_size=size, stratify=labels,
                               random_state=seed)
  return np.sort(chosen)


def load_fashion_mnist(data_dir: str = '') -> FashionMnist:
  """Finds in config.data.dir `data_dir` or elsewhere, downloads if need be, checks and reads the
  data (docs/data.md); a UserError if it is missing or damaged."""
  first = data_files.find_data_file(
      SUBDIR, (_IDX_NAMES[0], _IDX_NAMES[0] + '.gz', _CSV_NAMES[0]), data_dir,
      extra_dirs=(DEBIAN_DIR,), fetch=_download)
  # The other files must sit next to the first one, so that one copy of the set is used.
  if first.name == _CSV_NAMES[0]:
    train = read_fmnist_csv(first)
    return FashionMnist(*train, *read_fmnist_csv(_sibling(first, [_CSV_NAMES[1]])))
  paths = [_sibling(first, [name, name + '.gz']) for name in _IDX_NAMES]
  arrays = [read_idx(path, IDX_SHA256[name]) for path, name in zip(paths, _IDX_NAMES)]
  _check_pair(arrays[0], arrays[1], paths[0], paths[1])
  _check_pair(arrays[2], arrays[3], paths[2], paths[3])
  return FashionMnist(arrays[0], arrays[1].astype(np.int32), arrays[2], arrays[3].astype(np.int32))


def _download(folder: Path) -> Path:
  for name in _IDX_NAMES:
    data_files.download(f'{FMNIST_URL}{name}.gz', folder / name, IDX_SHA256[name],
                        extract=gzip.decompress)
  return folder / _IDX_NAMES[0]


def _sibling(first: Path, names: list[str]) -> Path:
  if found := data_files.first_file([first.parent], names):
    return found
  raise UserError(f'{first.parent} has {first.name} but no {" or ".join(names)}; put all files '
                  'of one Fashion-MNIST format in the same folder')


def read_idx(path: str | Path, sha256: str = '') -> np.ndarray:
  """uint8 (read-only) [header's dims] from an IDX file of unsigned bytes, gzipped or plain; a
  UserError if it is damaged or, decompressed, not of SHA-256 `sha256` when that is given."""
  path = Path(path)
  content = data_files.read_bytes(path)
  if content.startswith(b'\x1f\x8b'):  # The gzip magic.
    try:
      content = gzip.decompress(content)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
      raise UserError(f'{path} is a truncated or corrupted gzip file ({e}); replace it with a '
                      f'good copy, e.g. from {FMNIST_URL}') from None
  if len(content) < 4 or content[:2] != b'\0\0' or content[3] == 0:
    raise UserError(f'{path} is not an IDX file (starts with {content[:4].hex(" ") or "nothing"}, '
                    'expected 00 00 08 <ndim>); replace it with a Fashion-MNIST IDX file')
  if content[2] != 0x08:
    raise UserError(f'{path}: IDX data type 0x{content[2]:02x} is not unsigned byte (0x08); '
                    'replace it with a Fashion-MNIST IDX file')
  ndim = content[3]
  offset = 4 + 4 * ndim
  if len(content) < offset:
    raise UserError(f'{path} is truncated inside its IDX header; replace it with a good copy')
  dims = tuple(int(d) for d in np.frombuffer(content, '>u4', ndim, offset=4))
  expected = int(np.prod(dims))
  if len(content) - offset != expected:
    raise UserError(f'{path} has {len(content) - offset} data bytes but its IDX header {dims} '
                    f'says {expected}; the file is truncated or corrupted, replace it')
  array = np.frombuffer(content, np.uint8, offset=offset).reshape(dims)
  if sha256:
    name = path.name.removesuffix('.gz')
    data_files.check_sha256(path, content, sha256, f'replace it with {name}.gz from {FMNIST_URL}')
  return array


def read_fmnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [num, 28, 28], labels int32 [num]) from a Kaggle Fashion-MNIST CSV (header
  `label,pixel1,...,pixel784`, values 0..255); a UserError if it is not one."""
  import pandas as pd  # Slow to import, and only CSVs need it.
  path = Path(path)
  columns = ['label'] + [f'pixel{i}' for i in range(1, 785)]
  try:
    table = pd.read_csv(path, dtype=np.int64)
  except (OSError, ValueError) as e:  # pandas' ParserError and EmptyDataError are ValueErrors.
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f'{path}: cannot read it as a Fashion-MNIST CSV ({reason}); expected '
                    'integer columns label,pixel1..pixel784') from None
  if list(table.columns) != columns or table.empty:
    raise UserError(f'{path}: header must be label,pixel1,...,pixel784 with rows below it, '
                    f'got {len(table.columns)} columns starting {list(table.columns[:3])} and '
                    f'{len(table)} rows; use the Kaggle Fashion-MNIST CSV')
  values = table.to_numpy()
  labels, pixels = values[:, 0], values[:, 1:]
  if pixels.min() < 0 or pixels.max() > 255:
    raise UserError(f'{path}: pixel values must be in 0..255, found '
                    f'{pixels.min()}..{pixels.max()}; fix or replace the file')
  images = pixels.astype(np.uint8).reshape(-1, *_IMAGE_SHAPE)
  _check_pair(images, labels, path, path)  # Before the cast to int32 can wrap labels.
  return images, labels.astype(np.int32)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: Path,
                labels_path: Path) -> None:
  """Checks shapes, that counts agree and that labels are in 0..9."""
  if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
    raise UserError(f'{images_path}: images have shape {list(images.shape)}, expected '
                    '[num, 28, 28]; use the Fashion-MNIST images file')
  if labels.ndim != 1 or len(labels) != len(images):
    raise UserError(f'{labels_path}: labels have shape {list(labels.shape)} but {images_path} '
                    f'has {len(images)} images; use matching Fashion-MNIST files')
  bad = labels[(labels < 0) | (labels >= len(CLASS_NAMES))]
  if bad.size:
    raise UserError(f'{labels_path}: label {bad[0]} is out of range 0..9; '
                    'use the Fashion-MNIST labels file')
