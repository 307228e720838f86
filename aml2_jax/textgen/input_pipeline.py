"""The text generator's data: the SMS messages as characters, held-out messages, and windows."""

from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax.datasets import char_corpus, sms
from aml2_jax.datasets.char_corpus import CharCorpus, Vocabulary
from aml2_jax.errors import UserError


def load_corpus(config: ml_collections.ConfigDict) -> CharCorpus:
  """The SMS messages (the first `data.limit_messages`, 0 = all), encoded and split into training,
  validation and test messages (`char_corpus.split_messages`)."""
  d = config.data
  messages = sms.load_sms_spam(d.dir).texts[:d.limit_messages or None]
  corpus = char_corpus.build_corpus(messages, d.val_fraction, d.test_fraction, seed=d.split_seed)
  for part, ids in (('val', corpus.val_ids), ('test', corpus.test_ids)):
    if len(ids) <= d.window:
      raise UserError(f'the {part} text has {len(ids)} characters, not more than '
                      f'config.data.window={d.window}; raise config.data.{part}_fraction.')
  return corpus


def train_starts(config: ml_collections.ConfigDict, corpus: CharCorpus) -> np.ndarray:
  """Start offsets int32 [windows] of the training windows (a fixed subset if max_windows); with
  `data.random_offsets`, of the cyclic text at offset 0 (the step adds each epoch's offset)."""
  if config.data.random_offsets:
    starts = char_corpus.cyclic_window_starts(len(corpus.train_ids), config.data.window)
  else:
    starts = char_corpus.window_starts(len(corpus.train_ids), config.data.window,
                                       config.objective)
  return char_corpus.subsample(starts, config.data.max_windows, config.seed)


def held_out_starts(config: ml_collections.ConfigDict, ids: np.ndarray, stride: int) -> np.ndarray:
  """Every `stride`-th next-char window of a held-out text (validation or test)."""
  return char_corpus.window_starts(len(ids), config.data.window, 'next_char')[::stride]


def save_vocabulary(workdir: Path, vocab: Vocabulary) -> None:
  """Writes `vocab.json`, refusing to replace a different one a checkpoint may depend on."""
  path = workdir / char_corpus.VOCAB_FILE
  if path.exists() and Vocabulary.load(path) != vocab:
    raise UserError(f'{path} holds a different vocabulary than this data gives ({vocab.size} '
                    f'characters); use another --workdir, or the data that made it.')
  if console.is_main_process():
    vocab.save(path)
