"""Word tokenizer with the semantics of Keras' classic `Tokenizer` and `pad_sequences` (their
defaults; the rules are in docs/data.md)."""

import collections
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aml2_jax import jsonio
from aml2_jax.errors import UserError

FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'  # Keras' default `filters`.
_TRANSLATION = str.maketrans(FILTERS, ' ' * len(FILTERS))
_FORMAT = 'aml2_jax.tokenizer/1'


def text_to_words(text: str) -> list[str]:
  """Splits one text into words as Keras' `text_to_word_sequence` does with its defaults."""
  return [w for w in text.lower().translate(_TRANSLATION).split(' ') if w]


def normalised_text(text: str) -> str:
  """The form duplicates are found by (docs/data.md): `text_to_words`, split on any whitespace."""
  return ' '.join(' '.join(text_to_words(text)).split())


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int) -> np.ndarray:
  """int32 [num, maxlen]: each sequence's last `maxlen` ids, zeros on the left (Keras' 'pre')."""
  out = np.zeros((len(sequences), maxlen), np.int32)
  for row, seq in enumerate(sequences):
    if maxlen and (tail := list(seq)[-maxlen:]):
      out[row, -len(tail):] = tail
  return out


def _check_texts(texts: Iterable[str]) -> None:
  # A bare string would silently be read as a list of one-character texts.
  if isinstance(texts, str):
    raise TypeError('texts must be a sequence of strings, not a single string')


class Tokenizer:
  """`word_index`: every word seen in fitting -> its rank (1 = most frequent), as in Keras; ids
  >= `num_words` are dropped when encoding, so an embedding needs `num_words` rows."""

  def __init__(self, words: Sequence[str], num_words: int):
    """Builds from `words` in rank order (the most frequent first); prefer `Tokenizer.fit`."""
    if not isinstance(num_words, int) or num_words < 1:
      raise ValueError(f'num_words must be a positive int, got {num_words!r}')
    self.num_words = num_words
    self.word_index = {word: rank for rank, word in enumerate(words, start=1)}
    if len(self.word_index) != len(words):
      raise ValueError('words must be distinct')

  @classmethod
  def fit(cls, texts: Iterable[str], num_words: int) -> 'Tokenizer':
    """Ranks the words of `texts` by count, ties by first occurrence (Keras `fit_on_texts`)."""
    _check_texts(texts)
    counts = collections.Counter()  # Keeps first-occurrence order, as Keras' OrderedDict.
    for text in texts:
      counts.update(text_to_words(text))
    ranked = sorted(counts, key=counts.__getitem__, reverse=True)  # Stable: ties keep order.
    return cls(ranked, num_words)

  def texts_to_sequences(self, texts: Iterable[str]) -> list[list[int]]:
    """Maps each text to its ids in [1, num_words); unknown and cut-off words are dropped."""
    _check_texts(texts)
    sequences = []
    for text in texts:
      ids = (self.word_index.get(w) for w in text_to_words(text))
      sequences.append([i for i in ids if i is not None and i < self.num_words])
    return sequences

  def encode(self, texts: Iterable[str], maxlen: int) -> np.ndarray:
    """Texts to int32 ids [num, maxlen], pre-padded with 0 and pre-truncated (Keras defaults)."""
    return pad_sequences(self.texts_to_sequences(texts), maxlen)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the vocabulary as JSON, atomically."""
    words = sorted(self.word_index, key=self.word_index.__getitem__)
    payload = {'format': _FORMAT, 'num_words': self.num_words, 'words': words}
    jsonio.atomic_write_text(path, json.dumps(payload, ensure_ascii=False))

  @classmethod
  def load(cls, path: str | os.PathLike) -> 'Tokenizer':
    """Reads a vocabulary written by `save`; raises `UserError` if it is missing or invalid."""
    try:
      payload = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors.
      raise UserError(f'cannot read the tokenizer vocabulary {path}: {e}; '
                      'retrain in this workdir to rebuild it') from None
    try:
      words = payload['words']
      if (payload['format'] != _FORMAT or not isinstance(words, list)
          or not all(isinstance(w, str) for w in words)):
        raise ValueError(f'expected format {_FORMAT!r} with a list of words')
      return cls(words, payload['num_words'])
    except (KeyError, TypeError, ValueError) as e:
      raise UserError(f'invalid tokenizer vocabulary {path}: {e}; '
                      'retrain in this workdir to rebuild it') from None
