"""The spam classifier's data: corpus, de-duplication, the stratified split and the tokenizer.

Load the UCI SMS Spam Collection; drop exact duplicates (`config.data.dedup`); split stratified
with `config.data.split_seed`; fit the Keras-style tokenizer on the training split (or on every
message with `config.data.tokenizer_fit='all'`, as the study did); encode to `config.data.maxlen`
ids, pre-padded.
"""

import dataclasses
import hashlib
import json

import ml_collections
import numpy as np

from aml2_jax.datasets import sms
from aml2_jax.datasets.tokenizer import Tokenizer
from aml2_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class SpamSplit:
  """One run's data: the fitted tokenizer and both splits encoded.

  Attributes:
    tokenizer: fitted on the training split (or on all messages; see `config.data.tokenizer_fit`).
    train_ids: int32 [num_train, maxlen], pre-padded with 0.
    train_labels: int32 [num_train]; 1 = spam.
    test_ids: int32 [num_test, maxlen].
    test_labels: int32 [num_test].
  """
  tokenizer: Tokenizer
  train_ids: np.ndarray
  train_labels: np.ndarray
  test_ids: np.ndarray
  test_labels: np.ndarray


def load_corpus(config: ml_collections.ConfigDict) -> sms.SmsSpam:
  """The messages a run uses: the first `data.limit` rows (0 = all), deduplicated if asked."""
  corpus = sms.load_sms_spam(config.data.dir)
  if config.data.limit:
    corpus = sms.SmsSpam(corpus.texts[:config.data.limit], corpus.labels[:config.data.limit],
                         corpus.path)
  return sms.drop_duplicates(corpus) if config.data.dedup else corpus


def split_indices(corpus: sms.SmsSpam,
                  config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """(train_idx, test_idx) into `corpus`: stratified, seeded by `config.data.split_seed`."""
  train_idx, test_idx = sms.stratified_split(corpus.labels, config.data.test_fraction,
                                             config.data.split_seed)
  if len(test_idx) == 0 or len(np.unique(corpus.labels[train_idx])) < 2:
    raise UserError(f'{corpus.path} gives {len(train_idx)} training and {len(test_idx)} test '
                    'messages; both need messages and training needs both classes.')
  return train_idx, test_idx


def prepare_split(corpus: sms.SmsSpam, config: ml_collections.ConfigDict) -> SpamSplit:
  """Splits `corpus`, fits the tokenizer (`config.data.tokenizer_fit`) and encodes both splits."""
  train_idx, test_idx = split_indices(corpus, config)
  texts = corpus.texts
  fit_texts = texts if config.data.tokenizer_fit == 'all' else [texts[i] for i in train_idx]
  tokenizer = Tokenizer.fit(fit_texts, config.data.num_words)
  encode = lambda idx: tokenizer.encode([texts[i] for i in idx], config.data.maxlen)
  return SpamSplit(tokenizer, encode(train_idx), corpus.labels[train_idx],
                   encode(test_idx), corpus.labels[test_idx])


def vocab_digest(tokenizer: Tokenizer) -> str:
  """SHA-256 of the vocabulary (words in rank order and `num_words`), independent of file layout."""
  words = sorted(tokenizer.word_index, key=tokenizer.word_index.__getitem__)
  payload = json.dumps({'num_words': tokenizer.num_words, 'words': words}, ensure_ascii=False)
  return hashlib.sha256(payload.encode('utf-8')).hexdigest()


def describe(config: ml_collections.ConfigDict, corpus: sms.SmsSpam, split: SpamSplit) -> str:
  """One line on what a run trains and tests on."""
  fit = 'training split' if config.data.tokenizer_fit == 'train' else 'all messages'
  kept = 'deduplicated' if config.data.dedup else 'duplicates kept'
  return (f'seed {config.seed}: {len(corpus)} messages ({kept}), '
          f'split seed {config.data.split_seed}: {len(split.train_labels)} train '
          f'({int(split.train_labels.sum())} spam) / {len(split.test_labels)} test '
          f'({int(split.test_labels.sum())} spam); {len(split.tokenizer.word_index)} words seen in '
          f'the {fit}, ids below {split.tokenizer.num_words} kept')
