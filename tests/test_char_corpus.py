"""Tests for aml2_jax.char_corpus: the joined text, vocabulary, held-out split and windows."""


import jax
import numpy as np
import pytest

from aml2_jax.datasets import char_corpus, sms as sms_data
from aml2_jax.datasets.char_corpus import END_CHAR, Vocabulary
from aml2_jax.datasets.tokenizer import normalised_text
from conftest import REAL_ROOT, needs_real

MESSAGES = ['Hi there', 'Free entry!', 'Hi there', 'ok', 'see you at 5', 'lol', 'ok', 'Call me']




@needs_real
def test_real_corpus_vocabulary_and_window_count():
  messages = sms_data.load_sms_spam(str(REAL_ROOT)).texts
  vocab = char_corpus.build_vocabulary(messages)
  assert vocab.size == 117 and vocab.chars[vocab.end_id] == END_CHAR
  text = char_corpus.join_messages(messages)
  # The study's count: a 100-char window at every offset of the whole joined text.
  assert len(char_corpus.window_starts(len(text), 100, 'next_char')) == 454_060
  assert vocab.decode(vocab.encode(text)) == text


def test_join_puts_end_char_after_every_message():
  text = char_corpus.join_messages(['ab', 'c', 'x\ny'])
  assert text == 'ab\nc\nx y\n'  # A newline inside a message is not a message end.


def test_vocabulary_ids_encode_decode_and_unknown_chars():
  vocab = char_corpus.build_vocabulary(MESSAGES)
  assert vocab.chars == tuple(sorted(set(''.join(MESSAGES)) | {END_CHAR}))
  ids = vocab.encode('Hi 5')
  assert ids.dtype == np.int32 and [vocab.chars[i] for i in ids] == list('Hi 5')
  with pytest.raises(ValueError, match='Z'):
    vocab.encode('Hi Z')
  assert vocab.known('Hi ☃Z!') == ('Hi !', 'Z☃')


def test_vocabulary_round_trips_through_json_and_digest_tracks_chars(tmp_path):
  vocab = char_corpus.build_vocabulary(MESSAGES + ['é…'])
  vocab.save(tmp_path / 'vocab.json')
  assert Vocabulary.load(tmp_path / 'vocab.json') == vocab
  other = char_corpus.build_vocabulary(MESSAGES)
  assert other.digest() != vocab.digest()


def test_split_holds_out_whole_normalised_messages_for_validation_and_test():
  messages = ([f'message {i}' for i in range(100)] + ['dup'] * 5
              + ['Message 7!', 'MESSAGE  8', 'Dup.'])  # Copies up to case, punctuation, spacing.
  train, val, test = char_corpus.split_messages(messages, 0.1, 0.2, seed=3)
  norm = lambda part: {normalised_text(m) for m in part}
  assert not norm(train) & norm(val) and not norm(train) & norm(test) and not norm(val) & norm(test)
  assert sorted(train + val + test) == sorted(messages)
  assert (len(norm(val)), len(norm(test))) == (round(0.1 * 101), round(0.2 * 101))  # 101 forms.
  held_out = val + test
  assert ('dup' in held_out) == (held_out.count('dup') == 5 and 'Dup.' in held_out)
  assert char_corpus.split_messages(messages, 0.1, 0.2, seed=3) == (train, val, test)
  assert char_corpus.split_messages(messages, 0.1, 0.2, seed=4)[1] != val


@needs_real
def test_real_held_out_messages_do_not_normalise_to_training_ones():
  messages = sms_data.load_sms_spam(str(REAL_ROOT)).texts
  train, val, test = char_corpus.split_messages(messages, 0.05, 0.05, seed=0)
  train_forms = {normalised_text(m) for m in train}
  assert not any(normalised_text(m) in train_forms for m in val + test)
  assert (len(set(val)), len(set(test))) == (258, 258)  # 257 normalised forms each.
  assert not {normalised_text(m) for m in val} & {normalised_text(m) for m in test}


def test_next_char_window_i_is_text_i_to_i_plus_100_with_the_next_label():
  text = np.arange(1000, dtype=np.int32) % 97 + np.arange(1000, dtype=np.int32) // 97
  starts = char_corpus.window_starts(len(text), 100, 'next_char')
  assert len(starts) == 900 and starts[0] == 0 and starts[-1] == 899
  rows = np.asarray(char_corpus.gather_windows(text, starts[[0, 123, 899]], 100))
  for row, i in zip(rows, (0, 123, 899)):
    np.testing.assert_array_equal(row[:-1], text[i:i + 100])  # The window...
    assert row[-1] == text[i + 100]  # ...and its label.


def test_all_chars_windows_are_non_overlapping_and_fit():
  for length in (1001, 1000, 1100):
    starts = char_corpus.window_starts(length, 100, 'all_chars')
    np.testing.assert_array_equal(starts, np.arange((length - 1) // 100) * 100)
    assert starts[-1] + 100 + 1 <= length  # Inputs and shifted targets fit.
  with pytest.raises(ValueError, match='objective'):
    char_corpus.window_starts(1000, 100, 'every_char')


def test_jitted_batch_gather_returns_exactly_the_windows_of_the_text():
  rng = np.random.default_rng(0)
  text = rng.integers(0, 117, 5000).astype(np.int32)
  starts = rng.integers(0, 5000 - 100, 64).astype(np.int32)
  gathered = jax.jit(char_corpus.gather_windows, static_argnums=2)(text, starts, 100)
  expected = np.stack([text[s:s + 101] for s in starts])
  np.testing.assert_array_equal(np.asarray(gathered), expected)


def test_subsample_is_a_fixed_random_subset():
  starts = np.arange(1000, dtype=np.int32) * 3
  subset = char_corpus.subsample(starts, 50, seed=1)
  assert len(subset) == 50 and set(subset) <= set(starts) and np.all(np.diff(subset) > 0)
  np.testing.assert_array_equal(subset, char_corpus.subsample(starts, 50, seed=1))
  assert char_corpus.subsample(starts, 0, seed=1) is starts


@pytest.mark.parametrize('length', [1000, 1037])
def test_random_offset_windows_make_every_character_a_target_each_epoch(length):
  text = np.arange(length, dtype=np.int32)  # Each character its own position.
  starts = char_corpus.cyclic_window_starts(length, 100)
  assert len(starts) == -(-length // 100)
  for epoch in range(3):
    offset = char_corpus.epoch_offset(7, epoch, 100)
    assert 0 <= int(offset) < 100
    moved = char_corpus.offset_starts(starts, offset, length)
    rows = np.asarray(char_corpus.gather_windows(text, moved, 100, wrap=True))
    # Windows run on past the end from the start: the text read as a cycle.
    np.testing.assert_array_equal(rows, (np.asarray(moved)[:, None] + np.arange(101)) % length)
    assert set(rows[:, 1:].ravel()) == set(range(length))  # Every character a target.
    assert rows[0, 0] == offset  # Cut where the epoch's offset says.


def test_epoch_offsets_differ_between_epochs_and_repeat_for_the_same_seed_and_epoch():
  offsets = [int(char_corpus.epoch_offset(0, e, 100)) for e in range(20)]
  assert len(set(offsets)) > 10  # Fresh boundaries (20 draws of 100: repeats are rare).
  jitted = jax.jit(char_corpus.epoch_offset, static_argnums=(0, 2))
  assert [int(jitted(0, e, 100)) for e in range(20)] == offsets  # Same inside the step.
  assert [int(char_corpus.epoch_offset(1, e, 100)) for e in range(20)] != offsets
