"""Tests for aml2_jax.data_files: lookup order, download and checksums (no network used)."""

import hashlib
import io
import urllib.error
import urllib.request
import zipfile

import pytest

from aml2_jax.datasets import files as data_files
from aml2_jax.errors import UserError


URL = 'https://example.invalid/thing.zip'


class FakeResponse(io.BytesIO):
  """Stands in for urlopen's response: a body and a Content-Length header."""

  def __init__(self, body: bytes):
    super().__init__(body)
    self.headers = {'Content-Length': str(len(body))}




def _write(path, content=b'x'):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content)
  return path


def _message(excinfo) -> str:
  message = str(excinfo.value)
  assert '\n' not in message
  return message


def test_data_dir_is_a_root(repo_data, tmp_path):
  del repo_data
  path = _write(tmp_path / 'root' / 'ds' / 'b.txt')
  assert data_files.find_data_file('ds', ['a.txt', 'b.txt'], str(tmp_path / 'root')) == path


def test_data_dir_is_the_dataset_folder(repo_data, tmp_path):
  del repo_data
  path = _write(tmp_path / 'mine' / 'a.txt')
  assert data_files.find_data_file('ds', ['a.txt'], str(tmp_path / 'mine')) == path


def test_data_dir_without_the_file_does_not_fall_through(repo_data, monkeypatch, tmp_path):
  _write(repo_data / 'ds' / 'a.txt')
  monkeypatch.setenv(data_files.ENV_VAR, str(tmp_path))
  _write(tmp_path / 'ds' / 'a.txt')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError) as excinfo:
    data_files.find_data_file('ds', ['a.txt'], str(tmp_path / 'empty'), fetch=pytest.fail)
  message = _message(excinfo)
  assert 'config.data.dir' in message and str(tmp_path / 'empty') in message
  assert 'a.txt' in message


def test_search_order_env_then_repo_then_extra(repo_data, monkeypatch, tmp_path):
  env = _write(tmp_path / 'env' / 'ds' / 'a.txt')
  repo = _write(repo_data / 'ds' / 'a.txt')
  extra = _write(tmp_path / 'extra' / 'a.txt')
  monkeypatch.setenv(data_files.ENV_VAR, str(tmp_path / 'env'))
  find = lambda: data_files.find_data_file('ds', ['a.txt'], extra_dirs=[tmp_path / 'extra'])
  assert find() == env
  env.unlink()
  assert find() == repo
  repo.unlink()
  assert find() == extra


def test_earlier_folder_beats_earlier_name(repo_data, tmp_path):
  later_name = _write(repo_data / 'ds' / 'b.csv')
  _write(tmp_path / 'extra' / 'a.txt')
  found = data_files.find_data_file('ds', ['a.txt', 'b.csv'], extra_dirs=[tmp_path / 'extra'])
  assert found == later_name
  first_name = _write(repo_data / 'ds' / 'a.txt')
  assert data_files.find_data_file('ds', ['a.txt', 'b.csv']) == first_name


def test_env_var_that_is_not_a_folder(repo_data, monkeypatch, tmp_path):
  del repo_data
  monkeypatch.setenv(data_files.ENV_VAR, str(tmp_path / 'typo'))
  with pytest.raises(UserError) as excinfo:
    data_files.find_data_file('ds', ['a.txt'])
  assert 'AML2_DATA_DIR' in _message(excinfo) and 'typo' in _message(excinfo)


def test_not_found_without_fetch_lists_the_folders(repo_data, tmp_path):
  with pytest.raises(UserError) as excinfo:
    data_files.find_data_file('ds', ['a.txt', 'b.csv'], extra_dirs=[tmp_path / 'extra'])
  message = _message(excinfo)
  assert 'a.txt or b.csv' in message
  assert str(repo_data / 'ds') in message and str(tmp_path / 'extra') in message


def test_not_found_fetches_into_repo_data(repo_data):
  fetched = []
  result = data_files.find_data_file('ds', ['a.txt'], fetch=lambda d: fetched.append(d) or d)
  assert fetched == [repo_data / 'ds'] and result == repo_data / 'ds'


def test_download_stores_verified_file_with_progress(repo_data, monkeypatch, capsys):
  body = b'hello data' * 10000
  monkeypatch.setattr(urllib.request, 'urlopen', lambda url, timeout: FakeResponse(body))
  dest = repo_data / 'ds' / 'a.txt'
  assert data_files.download(URL, dest, hashlib.sha256(body).hexdigest()) == dest
  assert dest.read_bytes() == body
  assert list(dest.parent.iterdir()) == [dest]  # No temporary file left.
  assert 'Downloading a.txt' in capsys.readouterr().err


def test_download_extracts_and_verifies_the_member(repo_data, monkeypatch):
  member = b'ham\thi\n'
  zipped = io.BytesIO()
  with zipfile.ZipFile(zipped, 'w') as archive:
    archive.writestr('inner', member)
  monkeypatch.setattr(urllib.request, 'urlopen',
                      lambda url, timeout: FakeResponse(zipped.getvalue()))
  dest = repo_data / 'ds' / 'inner'
  unzip = lambda raw: zipfile.ZipFile(io.BytesIO(raw)).read('inner')
  data_files.download(URL, dest, hashlib.sha256(member).hexdigest(), extract=unzip)
  assert dest.read_bytes() == member


def test_download_checksum_mismatch_leaves_nothing(repo_data, monkeypatch):
  monkeypatch.setattr(urllib.request, 'urlopen', lambda url, timeout: FakeResponse(b'truncat'))
  dest = repo_data / 'ds' / 'a.txt'
  with pytest.raises(UserError) as excinfo:
    data_files.download(URL, dest, hashlib.sha256(b'truncated').hexdigest())
  message = _message(excinfo)
  assert 'SHA-256' in message and URL in message and str(dest) in message
  assert not dest.parent.exists() or not list(dest.parent.iterdir())


def test_download_of_a_non_zip_is_a_user_error(repo_data, monkeypatch):
  monkeypatch.setattr(urllib.request, 'urlopen',
                      lambda url, timeout: FakeResponse(b'<html>moved</html>'))
  unzip = lambda raw: zipfile.ZipFile(io.BytesIO(raw)).read('inner')
  with pytest.raises(UserError) as excinfo:
    data_files.download(URL, repo_data / 'ds' / 'inner', 'ab' * 32, extract=unzip)
  assert 'could not extract inner' in _message(excinfo)


def test_download_offline(repo_data, monkeypatch):
  def offline(url, timeout):
    raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')
  monkeypatch.setattr(urllib.request, 'urlopen', offline)
  dest = repo_data / 'ds' / 'a.txt'
  with pytest.raises(UserError) as excinfo:
    data_files.download(URL, dest, 'ab' * 32)
  message = _message(excinfo)
  assert 'no local copy of a.txt' in message and URL in message
  assert 'name resolution' in message
  assert str(repo_data / 'ds') in message and '$AML2_DATA_DIR/ds/' in message
  assert not dest.exists()


def test_check_sha256(tmp_path):
  content = b'abc'
  data_files.check_sha256(tmp_path / 'f', content, hashlib.sha256(content).hexdigest(), 'fix')
  with pytest.raises(UserError) as excinfo:
    data_files.check_sha256(tmp_path / 'f', b'ab', hashlib.sha256(content).hexdigest(), 'get it')
  message = _message(excinfo)
  assert str(tmp_path / 'f') in message and 'SHA-256 mismatch' in message
  assert message.endswith('get it')


def test_read_bytes_of_a_missing_file(tmp_path):
  with pytest.raises(UserError) as excinfo:
    data_files.read_bytes(tmp_path / 'nope.txt')
  assert str(tmp_path / 'nope.txt') in _message(excinfo)
