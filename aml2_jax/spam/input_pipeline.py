"""The spam classifier's data: corpus, de-duplication, the three-way split and the tokenizer.

The protocol (what `config.data.dedup` drops, and why held-out token twins go too) is in
docs/spam.md#protocol.
"""

import dataclasses
import hashlib
import json

import ml_collections
import numpy as np

from aml2_jax.datasets import sms
from aml2_jax.datasets.tokenizer import Tokenizer
from aml2_jax.errors import UserError

PARTS = ('train', 'val', 'test')
SPLIT_FILE = 'split.json'


@dataclasses.dataclass(frozen=True)
class SpamSplit:
  """One run's data: the fitted tokenizer and the three parts encoded; labels 1 = spam."""
  tokenizer: Tokenizer  # Fitted on the training part, or every message (`data.tokenizer_fit`).
  train_ids: np.ndarray  # int32 [num_train, maxlen], pre-padded with 0.
  train_labels: np.ndarray  # int32 [num_train].
  val_ids: np.ndarray
  val_labels: np.ndarray
  test_ids: np.ndarray
  test_labels: np.ndarray
  # Indices into the corpus of each part ('train', 'val', 'test') and of the held-out messages
  # dropped as copies of an earlier part's model input ('dropped').
  index: dict[str, np.ndarray]


def load_corpus(config: ml_collections.ConfigDict) -> sms.SmsSpam:
  """The messages a run uses: the first `data.limit` rows (0 = all), deduplicated if asked."""
  corpus = sms.load_sms_spam(config.data.dir)
  if config.data.limit:
    corpus = corpus.subset(np.arange(min(config.data.limit, len(corpus))))
  return sms.drop_duplicates(corpus) if config.data.dedup else corpus


def split_indices(corpus: sms.SmsSpam,
                  config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train_idx, val_idx, test_idx) into `corpus`, stratified by label and sorted: test drawn
  first with `split_seed`, validation from the rest with the seed pair (split_seed, 1), or, with
  `data.cv_folds`, its fold `data.cv_fold` (each class shuffled with that pair, dealt in turn)."""
  rest_idx, test_idx = sms.stratified_split(corpus.labels, config.data.test_fraction,
                                            config.data.split_seed)
  folds = config.data.cv_folds
  if folds:
    labels, rng = corpus.labels[rest_idx], np.random.default_rng((config.data.split_seed, 1))
    if folds > (fewest := np.bincount(labels, minlength=2).min()):
      raise UserError(f'config.data.cv_folds is {folds}, but the non-test part of {corpus.path} '
                      f'holds {fewest} messages of a class; use fewer folds.')
    fold = np.argsort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))
                                      for c in (0, 1)])) % folds
    # All folds train on as many messages (one program): one is left out where the others hold more.
    train_idx = np.sort(rng.choice(rest_idx[fold != config.data.cv_fold],
                                   len(rest_idx) - np.bincount(fold).max(), replace=False))
    val_idx = rest_idx[fold == config.data.cv_fold]
  else:
    fit_pos, val_pos = sms.stratified_split(corpus.labels[rest_idx], config.data.val_fraction,
                                            (config.data.split_seed, 1))
    train_idx, val_idx = rest_idx[fit_pos], rest_idx[val_pos]
  if (len(test_idx) == 0 or len(val_idx) == 0
      or len(np.unique(corpus.labels[train_idx])) < 2):
    raise UserError(f'{corpus.path} gives {len(train_idx)} training, {len(val_idx)} validation '
                    f'and {len(test_idx)} test messages; each part needs messages and training '
                    'needs both classes (raise config.data.limit).')
  return train_idx, val_idx, test_idx


def twins(ids: np.ndarray, seen_ids: np.ndarray) -> np.ndarray:
  """bool [num]: whether each row of `ids` [num, maxlen] equals some row of `seen_ids`."""
  seen = {row.tobytes() for row in seen_ids}
  return np.array([row.tobytes() in seen for row in ids], bool)


def fold_twins(corpus: sms.SmsSpam, config: ml_collections.ConfigDict) -> np.ndarray:
  """bool per test message: a twin, to some fold's tokenizer, of that fold's train or val part."""
  found = []
  for k in range(config.data.cv_folds):
    fold = config.copy_and_resolve_references()
    fold.data.update(cv_fold=k, dedup=False)
    split = prepare_split(corpus, fold)
    found.append(twins(split.test_ids, np.concatenate([split.train_ids, split.val_ids])))
  return np.any(found, axis=0)


def prepare_split(corpus: sms.SmsSpam, config: ml_collections.ConfigDict) -> SpamSplit:
  """Splits `corpus`, fits the tokenizer and encodes the parts; with `config.data.dedup`, drops
  held-out messages whose ids copy an earlier part's."""
  index = dict(zip(PARTS, split_indices(corpus, config)))
  texts = corpus.texts
  fit_idx = np.arange(len(corpus)) if config.data.tokenizer_fit == 'all' else index['train']
  tokenizer = Tokenizer.fit([texts[i] for i in fit_idx], config.data.num_words)
  ids = {part: tokenizer.encode([texts[i] for i in idx], config.data.maxlen)
         for part, idx in index.items()}
  dropped = []
  if config.data.dedup:
    for part, earlier in (('val', ('train',)), ('test', ('train', 'val'))):
      copy = twins(ids[part], np.concatenate([ids[p] for p in earlier]))
      if part == 'test' and config.data.cv_folds:  # One test part: a twin to any fold leaves it.
        copy |= fold_twins(corpus, config)
      dropped.append(index[part][copy])
      index[part], ids[part] = index[part][~copy], ids[part][~copy]
  index['dropped'] = np.sort(np.concatenate(dropped or [np.zeros(0, np.int64)]))
  empty = [part for part in ('val', 'test') if len(index[part]) == 0]
  if empty:
    raise UserError(f'the {empty[0]} part of {corpus.path} is empty once messages the model '
                    'cannot tell from training ones are dropped; use more messages '
                    '(config.data.limit) or a larger config.data.num_words.')
  labels = {part: corpus.labels[index[part]] for part in PARTS}
  return SpamSplit(tokenizer, ids['train'], labels['train'], ids['val'], labels['val'],
                   ids['test'], labels['test'], index)


def split_record(corpus: sms.SmsSpam, split: SpamSplit) -> dict:
  """What `split.json` holds: each part as 0-based lines of the data file, and the file."""
  return {**{part: corpus.rows[split.index[part]].tolist() for part in PARTS},
          'dropped_as_token_twins': corpus.rows[split.index['dropped']].tolist(),
          'data_file': corpus.path.name,
          'numbering': '0-based line of the data file on which each message starts'}


def protocol(config: ml_collections.ConfigDict) -> str:
  """The split protocol in words, for results.json."""
  if config.data.dedup:
    return ('deduplicated: one message per normalised text; held-out messages whose model input '
            'copies an earlier part are dropped')
  return "duplicates kept (the study's protocol): copies of training messages reach the test set"


def vocab_digest(tokenizer: Tokenizer) -> str:
  """SHA-256 of the vocabulary (words in rank order and `num_words`), independent of file layout."""
  words = sorted(tokenizer.word_index, key=tokenizer.word_index.__getitem__)
  payload = json.dumps({'num_words': tokenizer.num_words, 'words': words}, ensure_ascii=False)
  return hashlib.sha256(payload.encode('utf-8')).hexdigest()


def describe(config: ml_collections.ConfigDict, corpus: sms.SmsSpam, split: SpamSplit) -> str:
  """One line on what a run trains, validates and tests on."""
  fit = 'training part' if config.data.tokenizer_fit == 'train' else 'all messages'
  kept = 'deduplicated' if config.data.dedup else 'duplicates kept'
  labels = (split.train_labels, split.val_labels, split.test_labels)
  parts = ' / '.join(f'{len(y)} {part} ({int(y.sum())} spam)' for part, y in zip(PARTS, labels))
  twins_note = (f', {len(split.index["dropped"])} held-out token twins dropped'
                if config.data.dedup else '')
  fold = f' fold {config.data.cv_fold} of {config.data.cv_folds}' if config.data.cv_folds else ''
  return (f'seed {config.seed}: {len(corpus)} messages ({kept}), split seed '
          f'{config.data.split_seed}{fold}: {parts}{twins_note}; {len(split.tokenizer.word_index)} '
          f'words seen in the {fit}, ids below {split.tokenizer.num_words} kept')
