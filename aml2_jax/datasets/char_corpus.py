"""The SMS corpus as one character stream: vocabulary, split, training windows (docs/data.md)."""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax import jsonio
from aml2_jax.datasets.tokenizer import normalised_text
from aml2_jax.errors import UserError

# Ends every message: the UCI file has one message per line, and generated text prints naturally.
END_CHAR = '\n'
OBJECTIVES = ('next_char', 'all_chars')
VOCAB_FILE = 'vocab.json'


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Characters <-> ids; `chars` in code point order, so `END_CHAR` ('\\n') is id 0."""
  chars: tuple[str, ...]

  def __post_init__(self):
    if list(self.chars) != sorted(set(self.chars)) or END_CHAR not in self.chars:
      raise ValueError('vocabulary chars must be distinct, sorted and include END_CHAR')

  @property
  def size(self) -> int:
    return len(self.chars)

  @property
  def end_id(self) -> int:
    return self.chars.index(END_CHAR)

  def encode(self, text: str) -> np.ndarray:
    """Ids int32 [len(text)]; raises ValueError on characters outside the vocabulary."""
    unknown = self.known(text)[1]
    if unknown:
      raise ValueError(f'characters outside the vocabulary: {sorted(unknown)!r}')
    index = {c: i for i, c in enumerate(self.chars)}
    return np.fromiter(map(index.__getitem__, text), np.int32, len(text))

  def known(self, text: str) -> tuple[str, str]:
    """Splits `text` into (its in-vocabulary characters in order, the distinct unknown ones)."""
    present = set(self.chars)
    return ''.join(c for c in text if c in present), ''.join(sorted(set(text) - present))

  def decode(self, ids: Sequence[int]) -> str:
    return ''.join(self.chars[i] for i in ids)

  def digest(self) -> str:
    """SHA-256 of the character list: what a checkpoint's output layer was trained against."""
    return hashlib.sha256(json.dumps(self.chars).encode('utf-8')).hexdigest()

  def save(self, path: Path) -> None:
    record = {'end_char': END_CHAR, 'chars': list(self.chars), 'sha256': self.digest()}
    jsonio.atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=1) + '\n')

  @classmethod
  def load(cls, path: Path) -> 'Vocabulary':
    try:
      record = json.loads(Path(path).read_text(encoding='utf-8'))
      return cls(tuple(record['chars']))
    except FileNotFoundError:
      raise UserError(f'no vocabulary at {path}; train in this workdir first') from None
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'{path} is not a vocabulary file ({e}); delete it and train again') from None


def join_messages(messages: Sequence[str]) -> str:
  """One text: each message (an `END_CHAR` in it made a space), then `END_CHAR`."""
  return ''.join(m.replace(END_CHAR, ' ') + END_CHAR for m in messages)


def build_vocabulary(messages: Sequence[str]) -> Vocabulary:
  """Every distinct character of all the messages, held-out ones included, plus `END_CHAR`."""
  return Vocabulary(tuple(sorted(set(join_messages(messages)))))


def split_messages(messages: Sequence[str], val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[list[str], list[str], list[str]]:
  """(train, val, test) messages in file order: the distinct `normalised_text`s, shuffled by
  `seed`, go round(fraction * count) to validation, then to test, the rest to training."""
  keys = [normalised_text(m) for m in messages]
  distinct = list(dict.fromkeys(keys))
  num_val, num_test = round(val_fraction * len(distinct)), round(test_fraction * len(distinct))
  order = np.random.default_rng(seed).permutation(len(distinct))
  part = dict.fromkeys(distinct, 0)  # 0 train, 1 validation, 2 test.
  part.update({distinct[i]: 1 for i in order[:num_val]})
  part.update({distinct[i]: 2 for i in order[num_val:num_val + num_test]})
  return tuple([m for m, k in zip(messages, keys) if part[k] == p] for p in range(3))


@dataclasses.dataclass(frozen=True, eq=False)
class CharCorpus:
  """The vocabulary and the joined, encoded messages of each part, int32 [characters]."""
  vocab: Vocabulary
  train_ids: np.ndarray
  val_ids: np.ndarray  # For the checkpoint choice.
  test_ids: np.ndarray  # Scored once, at the end.


def build_corpus(messages: Sequence[str], val_fraction: float, test_fraction: float = 0.0, *,
                 seed: int) -> CharCorpus:
  """The vocabulary, then the parts of `split_messages`, each joined and encoded."""
  vocab = build_vocabulary(messages)
  parts = split_messages(messages, val_fraction, test_fraction, seed)
  return CharCorpus(vocab, *(vocab.encode(join_messages(part)) for part in parts))


def window_starts(text_len: int, window: int, objective: str) -> np.ndarray:
  """Start offsets int32 [num_windows] of the training windows in a text of `text_len` chars:
  every offset with a label after it (next_char), or 0, window, ... while `window + 1` fit."""
  if objective == 'next_char':
    return np.arange(max(text_len - window, 0), dtype=np.int32)
  if objective == 'all_chars':
    return np.arange(max(text_len - 1, 0) // window, dtype=np.int32) * window
  raise ValueError(f'objective must be one of {OBJECTIVES}, got {objective!r}')


def subsample(starts: np.ndarray, max_windows: int, seed: int) -> np.ndarray:
  """A fixed random subset of `max_windows` start offsets (sorted); all of them if 0 or more."""
  if not 0 < max_windows < len(starts):
    return starts
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(starts, max_windows, replace=False)).astype(np.int32)


def cyclic_window_starts(text_len: int, window: int) -> np.ndarray:
  """Start offsets int32 [ceil(text_len / window)] of windows cutting a cyclic text at offset 0."""
  return np.arange(-(-text_len // window), dtype=np.int32) * window


def epoch_offset(seed: int, epoch: jax.Array | int, window: int) -> jax.Array:
  """Where epoch `epoch` cuts the cyclic text: int32 scalar in [0, window), from (seed, epoch)
  alone so that a resumed run cuts as the first run did; `epoch` may be traced."""
  key = jax.random.fold_in(jax.random.key(seed), epoch)
  return jax.random.randint(key, (), 0, window, dtype=jnp.int32)


def offset_starts(starts: jax.Array, offset: jax.Array, text_len: int) -> jax.Array:
  """`starts` moved by `offset` round a cyclic text of `text_len` characters."""
  return (starts + offset) % text_len


def gather_windows(text: jax.Array, starts: jax.Array, window: int,
                   wrap: bool = False) -> jax.Array:
  """int [batch, window + 1]: row b is text[starts[b] : starts[b] + window + 1], past the end
  continuing from the start if `wrap`. One gather, inside jit."""
  text = jnp.asarray(text)
  index = starts[:, None] + jnp.arange(window + 1, dtype=starts.dtype)
  return text[index % text.shape[0] if wrap else index]
