"""The text generator's data: the SMS messages as characters, held-out messages, and windows."""

from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax.datasets import char_corpus, sms
from aml2_jax.datasets.char_corpus import CharCorpus, Vocabulary
from aml2_jax.errors import UserError


def load_corpus(config: ml_collections.ConfigDict) -> CharCorpus:
  """The SMS corpus, encoded and split into training and held-out messages."""
  messages = sms.load_sms_spam(config.data.dir).texts
  if config.data.limit_messages:  # Smoke runs use a prefix.
    messages = messages[:config.data.limit_messages]
  corpus = char_corpus.build_corpus(messages, config.data.val_fraction, config.data.split_seed)
  if len(corpus.val_ids) <= config.data.window:
    raise UserError(f'the held-out text has {len(corpus.val_ids)} characters, not more than '
                    f'config.data.window={config.data.window}; raise config.data.val_fraction.')
  return corpus


def train_starts(config: ml_collections.ConfigDict, corpus: CharCorpus) -> np.ndarray:
  """Start offsets int32 [windows] of the training windows (a fixed subset if max_windows)."""
  starts = char_corpus.window_starts(len(corpus.train_ids), config.data.window, config.objective)
  return char_corpus.subsample(starts, config.data.max_windows, config.seed)


def val_starts(config: ml_collections.ConfigDict, val_ids: np.ndarray,
               stride: int) -> np.ndarray:
  """Every `stride`-th next-char window of the held-out text."""
  starts = char_corpus.window_starts(len(val_ids), config.data.window, 'next_char')
  return starts[::stride]


def save_vocabulary(workdir: Path, vocab: Vocabulary) -> None:
  """Writes `vocab.json`, refusing to replace a different one a checkpoint may depend on."""
  path = workdir / char_corpus.VOCAB_FILE
  if path.exists() and Vocabulary.load(path) != vocab:
    raise UserError(f'{path} holds a different vocabulary than this data gives ({vocab.size} '
                    f'characters); use another --workdir, or the data that made it.')
  vocab.save(path)
