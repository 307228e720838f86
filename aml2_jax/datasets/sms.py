"""The SMS Spam Collection (UCI or Kaggle file, docs/data.md): de-duplication, stratified split."""

import csv
import dataclasses
import io
from pathlib import Path
from typing import Sequence
import zipfile

import numpy as np

from aml2_jax.datasets import files as data_files
from aml2_jax.datasets.tokenizer import normalised_text
from aml2_jax.errors import UserError

SUBDIR = 'sms_spam'
UCI_NAME = 'SMSSpamCollection'
KAGGLE_NAME = 'spam.csv'
SMS_URL = 'https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip'
# Of the file `SMSSpamCollection` inside the zip.
SMS_SHA256 = '7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d'

_LABELS = {'ham': 0, 'spam': 1}
_UCI_LINE = "each line must be 'ham' or 'spam', a tab, then the message"
_CSV_ROW = "each row must have v1 = 'ham' or 'spam' and v2 = the message"


@dataclasses.dataclass(frozen=True, eq=False)
class SmsSpam:
  """SMS messages verbatim, labels int32 [num] (1 = spam), the file they were read from, and
  rows int64 [num]: the 0-based line of `path` each starts on (None: 0, 1, 2, ...)."""
  texts: list[str]
  labels: np.ndarray
  path: Path
  rows: np.ndarray | None = None

  def __post_init__(self):
    rows = np.arange(len(self.texts)) if self.rows is None else self.rows
    object.__setattr__(self, 'rows', np.asarray(rows, np.int64))

  def __len__(self) -> int:
    return len(self.texts)

  def subset(self, idx) -> 'SmsSpam':
    """The messages at indices `idx` (int [k]), in that order, with their labels and rows."""
    idx = np.asarray(idx, np.int64)
    return SmsSpam([self.texts[i] for i in idx], self.labels[idx], self.path, self.rows[idx])


def load_sms_spam(data_dir: str = '') -> SmsSpam:
  """Finds in config.data.dir `data_dir` or elsewhere, downloads if need be, checks and reads the
  data (docs/data.md); a UserError if it is missing or damaged."""
  path = data_files.find_data_file(SUBDIR, (UCI_NAME, KAGGLE_NAME), data_dir, fetch=_download)
  # Only the canonical name has a known checksum; other files get the structural checks.
  if path.name == UCI_NAME:
    data_files.check_sha256(path, data_files.read_bytes(path), SMS_SHA256,
                            f'replace it with the UCI original ({UCI_NAME} in {SMS_URL})')
  return read_sms_file(path)


def _download(folder: Path) -> Path:
  return data_files.download(
      SMS_URL, folder / UCI_NAME, SMS_SHA256,
      extract=lambda zipped: zipfile.ZipFile(io.BytesIO(zipped)).read(UCI_NAME))


def read_sms_file(path: str | Path) -> SmsSpam:
  """Reads a Kaggle CSV (a `.csv` name, or a file starting `v1,`) or else a UCI file, with
  structural checks only: a UserError naming file and line if it is unreadable or malformed."""
  path = Path(path)
  raw = data_files.read_bytes(path)
  is_csv = path.suffix.lower() == '.csv' or raw.lstrip(b'\xef\xbb\xbf').startswith(b'v1,')
  rows = _parse_csv(path, raw) if is_csv else _parse_uci(path, raw)
  if not rows:
    raise UserError(f'{path} is empty (no messages); replace it with the data set file')
  labels, texts, lines = zip(*rows)
  return SmsSpam(texts=list(texts), labels=np.array(labels, np.int32), path=path,
                 rows=np.array(lines, np.int64))


def _parse_uci(path: Path, raw: bytes) -> list[tuple[int, str, int]]:
  """Returns (label, text, 0-based line) rows of a UCI-format file."""
  try:
    text = raw.decode('utf-8').removeprefix('\ufeff')
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    raise UserError(f'{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); re-save the file '
                    f'as UTF-8 or use the UCI original from {SMS_URL}') from None
  rows = []
  for line_num, line in enumerate(text.split('\n'), start=1):
    line = line.removesuffix('\r')  # Tolerate Windows line ends.
    if not line:
      continue
    label, tab, message = line.partition('\t')
    if not tab:
      raise UserError(f'{path}:{line_num}: no tab in the line; {_UCI_LINE}')
    if label not in _LABELS:
      raise UserError(f'{path}:{line_num}: label {label[:20]!r} is not ham or spam; {_UCI_LINE}')
    rows.append((_LABELS[label], message, line_num - 1))
  return rows


def _parse_csv(path: Path, raw: bytes) -> list[tuple[int, str, int]]:
  """Returns (label, text, 0-based first line) rows of a Kaggle-format CSV (columns v1, v2)."""
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError:
    text = raw.decode('latin-1')  # Kaggle's encoding; UTF-8 is tried first for re-saved files.
  reader = csv.reader(io.StringIO(text, newline=''))
  try:
    header = next(reader, [])
    if 'v1' not in header or 'v2' not in header:
      raise UserError(f"{path}: no 'v1' and 'v2' columns in the header {header[:5]}; expected "
                      "Kaggle's spam.csv (label in v1, message in v2)")
    label_col, text_col = header.index('v1'), header.index('v2')
    rows = []
    start = reader.line_num  # Lines read before a record: its first line, 0-based.
    for record in reader:
      first_line, start = start, reader.line_num
      if not any(record):
        continue
      if len(record) <= max(label_col, text_col):
        raise UserError(f'{path}:{reader.line_num}: too few columns; {_CSV_ROW}')
      label = record[label_col]
      if label not in _LABELS:
        raise UserError(f'{path}:{reader.line_num}: label {label[:20]!r} is not ham or spam; '
                        f'{_CSV_ROW}')
      rows.append((_LABELS[label], record[text_col], first_line))
  except csv.Error as e:
    raise UserError(f'{path}:{reader.line_num}: malformed CSV ({e}); {_CSV_ROW}') from None
  return rows


def drop_duplicates(data: SmsSpam) -> SmsSpam:
  """Removes messages whose `normalised_text` occurred earlier, whatever the label, keeping the
  first copy and the order."""
  first = {}
  for i, text in enumerate(data.texts):
    first.setdefault(normalised_text(text), i)
  return data.subset(sorted(first.values()))


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """(train_idx, test_idx), sorted int64, covering 0..num-1 for labels int [num]: each class has
  round(test_fraction * class count) test rows, drawn by a shuffle with `seed`."""
  if not 0 <= test_fraction <= 1:
    raise UserError(f'test_fraction must be between 0 and 1, got {test_fraction}; fix the config')
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  train, test = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]  # Empty if no labels.
  for label in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == label))
    num_test = round(test_fraction * len(idx))
    test.append(idx[:num_test])
    train.append(idx[num_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
