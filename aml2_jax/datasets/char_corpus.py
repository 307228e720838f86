"""The SMS corpus as one character stream: vocabulary, held-out messages, training windows.

Whole messages are held out for validation and for test, grouped by normalised text
(`tokenizer.normalised_text`): every message that normalises alike goes to the same side, so no
held-out message is a training message up to case, punctuation or spacing.

The messages are joined into one text with `END_CHAR` after every message, and each character
becomes an integer id. Training never materialises its windows: the text stays one int32 array and
a batch of windows is gathered from it by start offset (`gather_windows`, inside the jitted step).

Two objectives share this arithmetic (`window_starts`):

  next_char   the study's: a window of `window` characters at every offset, label the next one;
              window i is text[i:i+window], label text[i+window]; len(text) - window windows.
  all_chars   predict every next character of non-overlapping windows: window j is
              text[j*window : j*window + window], targets shifted by one.

Either way a window with its targets is the `window + 1` characters from its start offset.

Random offsets (all_chars, an option): the text is read as a cycle (it ends with `END_CHAR`, so
wrapping round joins the last message to the first as any two messages are joined) and cut into
ceil(len / window) windows at `epoch_offset(seed, epoch)`, a fresh offset each epoch: every
character is a target of some window, and the window boundaries move between epochs
(`cyclic_window_starts`, `offset_starts`, `gather_windows(..., wrap=True)`).
"""

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax.datasets.tokenizer import normalised_text
from aml2_jax.errors import UserError

# Marks the end of every message in the joined text. Messages never contain a newline in the UCI
# file (one message per line), so it is free, and generated text prints naturally.
END_CHAR = '\n'
OBJECTIVES = ('next_char', 'all_chars')
VOCAB_FILE = 'vocab.json'


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Characters <-> ids. Ids follow code point order, so `END_CHAR` ('\\n') is id 0.

  Attributes:
    chars: the character of each id, sorted by code point; includes `END_CHAR`.
  """
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
    codes = _code_points(text)
    vocab_codes = _code_points(''.join(self.chars))
    ids = np.searchsorted(vocab_codes, codes).clip(0, self.size - 1)
    unknown = vocab_codes[ids] != codes
    if unknown.any():
      missing = sorted({text[i] for i in np.flatnonzero(unknown)})
      raise ValueError(f'characters outside the vocabulary: {missing!r}')
    return ids.astype(np.int32)

  def known(self, text: str) -> tuple[str, str]:
    """Splits `text` into (its in-vocabulary characters in order, the distinct unknown ones)."""
    present = set(self.chars)
    return (''.join(c for c in text if c in present),
            ''.join(sorted({c for c in text if c not in present})))

  def decode(self, ids: Sequence[int]) -> str:
    return ''.join(self.chars[i] for i in ids)

  def digest(self) -> str:
    """SHA-256 of the character list: what a checkpoint's output layer was trained against."""
    return hashlib.sha256(json.dumps(self.chars).encode('utf-8')).hexdigest()

  def save(self, path: Path) -> None:
    record = {'end_char': END_CHAR, 'chars': list(self.chars), 'sha256': self.digest()}
    Path(path).write_text(json.dumps(record, ensure_ascii=False, indent=1) + '\n', encoding='utf-8')

  @classmethod
  def load(cls, path: Path) -> 'Vocabulary':
    try:
      record = json.loads(Path(path).read_text(encoding='utf-8'))
      return cls(tuple(record['chars']))
    except FileNotFoundError:
      raise UserError(f'no vocabulary at {path}; train in this workdir first') from None
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'{path} is not a vocabulary file ({e}); delete it and train again') from None


def _code_points(text: str) -> np.ndarray:
  return np.frombuffer(text.encode('utf-32-le'), np.uint32)


def clean_message(message: str) -> str:
  """A message with `END_CHAR` inside it (possible in CSV files) replaced by a space."""
  return message.replace(END_CHAR, ' ')


def join_messages(messages: Sequence[str]) -> str:
  """One text: every message followed by `END_CHAR`."""
  return ''.join(clean_message(m) + END_CHAR for m in messages)


def build_vocabulary(messages: Sequence[str]) -> Vocabulary:
  """Every distinct character of the messages plus `END_CHAR` (117 on the UCI corpus).

  Built from all messages, held-out ones included: it is only the character inventory (the study's
  output layer size), and it keeps validation free of unknown characters.
  """
  return Vocabulary(tuple(sorted(set(join_messages(messages)))))


def split_messages(messages: Sequence[str], val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[list[str], list[str], list[str]]:
  """Holds out whole messages for validation and test, by distinct normalised text.

  Of the distinct normalised texts, in an order drawn with `seed`, the first
  round(val_fraction * count) are validation and the next round(test_fraction * count) test.
  Every message goes where its normalised text went (the UCI file repeats 403 rows exactly and
  40 more up to case and punctuation), so no held-out message is also, normalised, a training
  one, nor a validation one a test one. Order is kept within each part.

  Returns:
    (train_messages, val_messages, test_messages).
  """
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
  """The encoded corpus.

  Attributes:
    vocab: the vocabulary.
    train_ids: int32 [train characters], the joined training messages.
    val_ids: int32 [validation characters], the joined validation messages (checkpoint choice).
    test_ids: int32 [test characters], the joined test messages (scored once, at the end).
  """
  vocab: Vocabulary
  train_ids: np.ndarray
  val_ids: np.ndarray
  test_ids: np.ndarray


def build_corpus(messages: Sequence[str], val_fraction: float, test_fraction: float = 0.0, *,
                 seed: int) -> CharCorpus:
  """Vocabulary, then the train/validation/test split of whole messages, each joined and encoded.

  `test_fraction` 0 leaves the test text empty.
  """
  vocab = build_vocabulary(messages)
  parts = split_messages(messages, val_fraction, test_fraction, seed)
  return CharCorpus(vocab, *(vocab.encode(join_messages(part)) for part in parts))


def window_starts(text_len: int, window: int, objective: str) -> np.ndarray:
  """Start offsets int32 [num_windows] of every training window in a text of `text_len` chars.

  next_char: every offset with a label after the window, 0 .. text_len - window - 1.
  all_chars: 0, window, 2 * window, ... while the window's `window + 1` characters fit.
  """
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
  """Start offsets int32 [ceil(text_len / window)] of windows cutting a cyclic text at offset 0.

  Shifted by any offset (`offset_starts`), their targets cover every character of the text; the
  last window overlaps the first by `-text_len % window` targets.
  """
  return np.arange(-(-text_len // window), dtype=np.int32) * window


def epoch_offset(seed: int, epoch: jax.Array | int, window: int) -> jax.Array:
  """The offset in [0, window) at which epoch `epoch` cuts the cyclic text, int32 scalar.

  Drawn from (seed, epoch) alone, so a resumed run cuts its epochs where the first run did; works
  inside jit with a traced `epoch`.
  """
  key = jax.random.fold_in(jax.random.key(seed), epoch)
  return jax.random.randint(key, (), 0, window, dtype=jnp.int32)


def offset_starts(starts: jax.Array, offset: jax.Array, text_len: int) -> jax.Array:
  """`starts` moved by `offset` round a cyclic text of `text_len` characters."""
  return (starts + offset) % text_len


def gather_windows(text: jax.Array, starts: jax.Array, window: int,
                   wrap: bool = False) -> jax.Array:
  """The `window + 1` characters from each start: int [batch, window + 1].

  Row b is text[starts[b] : starts[b] + window + 1]; inputs are [:, :-1], targets [:, 1:] (all
  characters) or [:, -1] (the next character). With `wrap`, indices past the end continue from
  the start (the text read as a cycle). Works inside jit as one gather.
  """
  text = jnp.asarray(text)
  index = starts[:, None] + jnp.arange(window + 1, dtype=starts.dtype)
  return text[index % text.shape[0] if wrap else index]
