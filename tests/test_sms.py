"""Tests for aml2_jax.datasets.sms, on tiny files written here and on the real UCI file."""

import hashlib
import io
from pathlib import Path
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from aml2_jax.datasets import files as data_files
from aml2_jax.datasets import sms as sms_data
from aml2_jax.datasets.tokenizer import normalised_text
from aml2_jax.errors import UserError
from conftest import REAL_ROOT, needs_real

UCI_TEXT = 'ham\tGo until jurong point\nspam\tWIN £100 now!\tcall\nham\t  Ok lar...\n'






def _write(path: Path, content: bytes) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content)
  return path


def _error(path: Path) -> str:
  with pytest.raises(UserError) as excinfo:
    sms_data.read_sms_file(path)
  message = str(excinfo.value)
  assert '\n' not in message and str(path) in message
  return message


@needs_real
def test_real_file():
  data = sms_data.load_sms_spam(str(REAL_ROOT))
  assert len(data) == 5574 and data.labels.shape == (5574,)
  assert data.labels.dtype == np.int32 and int(data.labels.sum()) == 747
  assert data.texts[0].startswith('Go until jurong point')
  assert data.path == REAL_ROOT / 'sms_spam' / 'SMSSpamCollection'


@needs_real
def test_real_file_through_env_var(repo_data, monkeypatch):
  del repo_data
  monkeypatch.setenv(data_files.ENV_VAR, str(REAL_ROOT))
  assert sms_data.load_sms_spam().path == REAL_ROOT / 'sms_spam' / 'SMSSpamCollection'


@needs_real
def test_real_file_deduplicated():
  data = sms_data.load_sms_spam(str(REAL_ROOT))
  assert data.rows.tolist() == list(range(5574))  # One message per line, no blank lines.
  assert len(set(data.texts)) == 5171  # Exact copies alone.
  unique = sms_data.drop_duplicates(data)
  assert len(unique) == 5131 and int(unique.labels.sum()) == 630  # 653 after exact dedup.
  assert len({normalised_text(t) for t in unique.texts}) == 5131


@needs_real
def test_truncated_real_file_is_refused(tmp_path):
  real = (REAL_ROOT / 'sms_spam' / 'SMSSpamCollection').read_bytes()
  path = _write(tmp_path / 'sms_spam' / 'SMSSpamCollection', real[:len(real) // 2])
  with pytest.raises(UserError) as excinfo:
    sms_data.load_sms_spam(str(tmp_path))
  message = str(excinfo.value)
  assert str(path) in message and 'corrupted or truncated (SHA-256 mismatch)' in message
  assert sms_data.SMS_URL in message


def test_canonical_name_is_checksummed_explicit_path_is_not(tmp_path):
  path = _write(tmp_path / 'SMSSpamCollection', UCI_TEXT.encode())
  with pytest.raises(UserError, match='SHA-256 mismatch'):
    sms_data.load_sms_spam(str(tmp_path))
  assert len(sms_data.read_sms_file(path)) == 3


def test_uci_format(tmp_path):
  data = sms_data.read_sms_file(_write(tmp_path / 'sms.txt', UCI_TEXT.encode()))
  # Tabs inside a message and leading spaces are kept.
  assert data.texts == ['Go until jurong point', 'WIN £100 now!\tcall', '  Ok lar...']
  assert data.labels.tolist() == [0, 1, 0] and data.labels.dtype == np.int32


def test_uci_format_with_windows_line_ends(tmp_path):
  raw = UCI_TEXT.replace('\n', '\r\n').encode()
  data = sms_data.read_sms_file(_write(tmp_path / 'sms.txt', raw))
  assert data.texts[0] == 'Go until jurong point' and data.labels.tolist() == [0, 1, 0]


def test_kaggle_csv(tmp_path):
  raw = ('v1,v2,,,\nham,"Hi, how are you?",,,\nspam,WIN £100 now,,,\n').encode('latin-1')
  data = sms_data.read_sms_file(_write(tmp_path / 'spam.csv', raw))
  assert data.texts == ['Hi, how are you?', 'WIN £100 now']
  assert data.labels.tolist() == [0, 1]


def test_kaggle_csv_recognized_by_content(tmp_path):
  data = sms_data.read_sms_file(_write(tmp_path / 'renamed.txt', b'v1,v2\nspam,Call now\n'))
  assert data.texts == ['Call now'] and data.labels.tolist() == [1]


def test_kaggle_csv_found_by_lookup(tmp_path):
  _write(tmp_path / 'sms_spam' / 'spam.csv', b'v1,v2\nham,hello\n')
  data = sms_data.load_sms_spam(str(tmp_path))
  assert data.path.name == 'spam.csv' and data.texts == ['hello']


def test_non_utf8_names_the_line(tmp_path):
  path = _write(tmp_path / 'sms.txt', 'ham\tok\nspam\tWIN £5\n'.encode('latin-1'))
  message = _error(path)
  assert f'{path}:2:' in message and 'not valid UTF-8' in message


def test_line_without_tab(tmp_path):
  message = _error(_write(tmp_path / 'sms.txt', b'ham\tok\nspam\tgo\nham just spaces\n'))
  assert ':3:' in message and 'no tab' in message


def test_bad_label(tmp_path):
  message = _error(_write(tmp_path / 'sms.txt', b'ham\tok\njunk\tgo\n'))
  assert ':2:' in message and "'junk' is not ham or spam" in message


def test_empty_file(tmp_path):
  assert 'empty' in _error(_write(tmp_path / 'SMSSpamCollection', b''))
  assert 'empty' in _error(_write(tmp_path / 'blank.txt', b'\n\n'))


def test_csv_without_v1_v2(tmp_path):
  message = _error(_write(tmp_path / 'spam.csv', b'label,text\nham,hi\n'))
  assert "no 'v1' and 'v2' columns" in message


def test_csv_bad_label_names_the_line(tmp_path):
  message = _error(_write(tmp_path / 'spam.csv', b'v1,v2\nham,hi\nnope,there\n'))
  assert ':3:' in message and "'nope' is not ham or spam" in message


def test_drop_duplicates_keeps_first_and_order(tmp_path):
  data = sms_data.SmsSpam(texts=['a', 'b', 'A!', 'a', 'c', ' b ', 'a b', 'a\rb', 'a\xa0b'],
                          labels=np.array([0, 0, 0, 1, 1, 0, 0, 1, 1], np.int32), path=tmp_path)
  unique = sms_data.drop_duplicates(data)
  # Case, punctuation and whitespace (also '\r' and U+00A0) do not make a new message; the label
  # does not either: ('a', spam) would be the same model input as ('a', ham).
  assert unique.texts == ['a', 'b', 'c', 'a b']
  assert unique.labels.tolist() == [0, 0, 1, 0] and unique.path == tmp_path
  assert unique.rows.tolist() == [0, 1, 4, 6]


def test_rows_are_the_lines_messages_start_on(tmp_path):
  uci = sms_data.read_sms_file(_write(tmp_path / 'sms.txt', b'ham\tok\n\nspam\tgo\nham\tyes\n'))
  assert uci.rows.tolist() == [0, 2, 3]  # The blank line 1 holds no message.
  raw = b'v1,v2\nham,"two\nlines"\n\nspam,go\n'
  csv_data = sms_data.read_sms_file(_write(tmp_path / 'spam.csv', raw))
  assert csv_data.texts == ['two\nlines', 'go'] and csv_data.rows.tolist() == [1, 4]


def test_stratified_split():
  labels = np.array([0] * 17 + [1] * 8 + [2] * 5)
  np.random.default_rng(1).shuffle(labels)
  train, test = sms_data.stratified_split(labels, 0.3, seed=0)
  assert [np.sum(labels[test] == c) for c in range(3)] == [5, 2, 2]  # round(5.1, 2.4, 1.5)
  assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(30))
  again, _ = sms_data.stratified_split(labels, 0.3, seed=0)
  other, _ = sms_data.stratified_split(labels, 0.3, seed=1)
  assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_stratified_split_rejects_bad_fraction():
  with pytest.raises(UserError, match='test_fraction'):
    sms_data.stratified_split(np.zeros(4), 1.5, seed=0)


class FakeResponse(io.BytesIO):
  """Stands in for urlopen's response: a body and a Content-Length header."""

  def __init__(self, body: bytes):
    super().__init__(body)
    self.headers = {'Content-Length': str(len(body))}


def test_download_when_missing(repo_data, monkeypatch):
  zipped = io.BytesIO()
  with zipfile.ZipFile(zipped, 'w') as archive:
    archive.writestr('SMSSpamCollection', UCI_TEXT)
    archive.writestr('readme', 'about')
  urls = []
  monkeypatch.setattr(urllib.request, 'urlopen',
                      lambda url, timeout: urls.append(url) or FakeResponse(zipped.getvalue()))
  monkeypatch.setattr(sms_data, 'SMS_SHA256', hashlib.sha256(UCI_TEXT.encode()).hexdigest())
  data = sms_data.load_sms_spam()
  assert urls == [sms_data.SMS_URL]
  assert data.path == repo_data / 'sms_spam' / 'SMSSpamCollection'
  assert data.path.read_text() == UCI_TEXT and data.labels.tolist() == [0, 1, 0]


def test_missing_and_offline(repo_data, monkeypatch):
  def offline(url, timeout):
    raise urllib.error.URLError('network is unreachable')
  monkeypatch.setattr(urllib.request, 'urlopen', offline)
  with pytest.raises(UserError) as excinfo:
    sms_data.load_sms_spam()
  message = str(excinfo.value)
  assert 'no local copy of SMSSpamCollection' in message and sms_data.SMS_URL in message
  assert str(repo_data / 'sms_spam') in message
  assert not (repo_data / 'sms_spam' / 'SMSSpamCollection').exists()
