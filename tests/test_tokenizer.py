"""Tests for aml2_jax.tokenizer: Keras `Tokenizer(num_words)` and `pad_sequences` semantics."""

import json

import numpy as np
import pytest

from aml2_jax.errors import UserError
from aml2_jax.datasets.tokenizer import Tokenizer, pad_sequences, text_to_words


def test_case_folding_and_punctuation_like_keras():
  assert text_to_words('Hello,WORLD!!  Ünïcode ÉTÉ') == ['hello', 'world', 'ünïcode', 'été']
  # Every default Keras filter splits; the apostrophe and '\r' are not filters in Keras.
  assert text_to_words('a!b"c#d$e%f&g(h)i*j+k,l-m.n/o:p;q<r=s>t?u@v[w\\x]y^z_1`2{3|4}5~6\t7\n8') \
      == list('abcdefghijklmnopqrstuvwxyz') + list('12345678')
  assert text_to_words("don't\r") == ["don't\r"]


def test_ranking_by_count_then_first_occurrence():
  tok = Tokenizer.fit(['z a c', 'c y a', 'b c'], num_words=100)
  # c: 3, a: 2, then z, y, b (1 each) in order of first appearance, not alphabetical.
  assert list(tok.word_index.items()) == [('c', 1), ('a', 2), ('z', 3), ('y', 4), ('b', 5)]


def test_num_words_cut_off_and_unknown_words_dropped():
  tok = Tokenizer.fit(['x x x y y z'], num_words=3)  # Keeps ids 1 and 2 only.
  assert tok.word_index['z'] == 3  # Still indexed, as in Keras...
  assert tok.texts_to_sequences(['z y unknown x']) == [[2, 1]]  # ...but never emitted.


def test_pre_padding_and_pre_truncation():
  np.testing.assert_array_equal(
      pad_sequences([[1, 2], [1, 2, 3, 4, 5], []], maxlen=3),
      [[0, 1, 2], [3, 4, 5], [0, 0, 0]])
  tok = Tokenizer.fit(['a b c d'], num_words=10)
  encoded = tok.encode(['a b c d', '', 'nothing known'], maxlen=2)
  assert encoded.dtype == np.int32
  np.testing.assert_array_equal(encoded, [[3, 4], [0, 0], [0, 0]])


def test_save_load_round_trip(tmp_path):
  tok = Tokenizer.fit(['Ça va? ça VA très bien', 'bien sûr'], num_words=4)
  tok.save(tmp_path / 'vocab.json')
  loaded = Tokenizer.load(tmp_path / 'vocab.json')
  assert loaded.word_index == tok.word_index and loaded.num_words == 4
  texts = ['très bien, ça va', 'sûr']
  assert loaded.texts_to_sequences(texts) == tok.texts_to_sequences(texts)


@pytest.mark.parametrize('content', [
    '{not json',
    '[]',
    '{"format": "aml2_jax.tokenizer/1", "num_words": 5}',
    '{"format": "aml2_jax.tokenizer/1", "num_words": 0, "words": ["a"]}',
    '{"format": "aml2_jax.tokenizer/1", "num_words": 5, "words": "ab"}',
    '{"format": "other", "num_words": 5, "words": ["a"]}',
])
def test_bad_vocabulary_file_is_a_user_error(tmp_path, content):
  path = tmp_path / 'vocab.json'
  path.write_text(content)
  with pytest.raises(UserError, match='vocab.json') as info:
    Tokenizer.load(path)
  assert '\n' not in str(info.value)


def test_missing_vocabulary_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='missing.json'):
    Tokenizer.load(tmp_path / 'missing.json')


def test_single_string_is_rejected():
  with pytest.raises(TypeError):
    Tokenizer.fit('one text, not a list', num_words=10)


def test_saved_file_is_plain_json_in_rank_order(tmp_path):
  Tokenizer.fit(['b a a'], num_words=10).save(tmp_path / 'v.json')
  assert json.loads((tmp_path / 'v.json').read_text(encoding='utf-8'))['words'] == ['a', 'b']
