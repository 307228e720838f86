"""Count-based baselines (uniform, unigram, Kneser-Ney, add-k) of the text generator's objective.

Bits/char of the character after each window of the held-out texts, counts from the training text
only: `python -m aml2_jax.textgen.baselines [--out=FILE] [--order=5]` (docs/textgen.md#baselines).
"""

import json
import math
from pathlib import Path
import sys

from absl import app, flags
import ml_collections
from ml_collections import config_flags
import numpy as np

from aml2_jax.datasets.char_corpus import CharCorpus
from aml2_jax.errors import UserError
from aml2_jax.textgen import input_pipeline
from aml2_jax.training.config import CONFIG_DIR
from aml2_jax.runtime.metrics_logging import write_json

ADD_K_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
FALLBACK_DISCOUNT = 0.5  # Kneser-Ney's discount at an order with no count of 1 (see `KneserNey`).


def gram_keys(ids: np.ndarray, n: int, base: int, ends: np.ndarray | None = None) -> np.ndarray:
  """int64 [num]: the n-gram of `ids` ending at each of `ends` (default: every n-gram) as one
  base-`base` number, first id high."""
  if base ** n >= 2 ** 63:
    raise ValueError(f'order {n} over {base} symbols does not fit in int64 keys')
  ids = np.asarray(ids, np.int64)
  ends = np.arange(n - 1, len(ids)) if ends is None else ends
  keys = np.zeros(len(ends), np.int64)
  for j in range(n - 1, -1, -1):
    keys = keys * base + ids[ends - j]
  return keys


def held_out_targets(ids: np.ndarray, window: int) -> np.ndarray:
  """Positions int64 [num_windows] of the character after each next-char window of `ids`."""
  return np.arange(window, len(ids), dtype=np.int64)


def bits_per_char(probs: np.ndarray) -> float:
  """Mean -log2 of the probabilities given to the targets."""
  return float(-np.mean(np.log2(probs)))


def _lookup(table_keys: np.ndarray, table_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """table_values at each of `keys` in sorted `table_keys`; 0 where a key is absent."""
  if not len(table_keys):
    return np.zeros(len(keys), table_values.dtype)
  pos = np.searchsorted(table_keys, keys).clip(0, len(table_keys) - 1)
  return np.where(table_keys[pos] == keys, table_values[pos], 0)


def _count_table(keys: np.ndarray, counts: np.ndarray, base: int) -> tuple:
  """(keys, counts, context keys, context totals, distinct followers) of sorted unique keys."""
  contexts, first = np.unique(keys // base, return_index=True)
  totals = np.add.reduceat(counts, first) if len(keys) else counts
  return keys, counts, contexts, totals, np.diff(np.append(first, len(keys)))


def _scores(table: tuple, grams: np.ndarray, base: int) -> list[np.ndarray]:
  """float64 [c(h x), c(h), N(h)], each [num], of each gram h x in a `_count_table`."""
  keys, counts, contexts, totals, types = table
  return [_lookup(k, v, q).astype(np.float64)
          for k, v, q in ((keys, counts, grams), (contexts, totals, grams // base),
                          (contexts, types, grams // base))]


def unigram_probs(train_ids: np.ndarray, targets: np.ndarray, vocab_size: int) -> np.ndarray:
  """P(target) [num] under add-one smoothed character frequencies of the training text."""
  counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
  return (counts[targets] + 1) / (counts.sum() + vocab_size)


class KneserNey:
  """Interpolated Kneser-Ney character model of order `order`, fit on `train_ids`:
  P_k(x | h) = (max(c_k(h x) - D_k, 0) + D_k N_k(h) P_{k-1}(x | h')) / c_k(h), P_0 = 1 / V
  (docs/textgen.md#baselines); every character of the vocabulary gets a positive probability."""

  def __init__(self, train_ids: np.ndarray, order: int, vocab_size: int):
    self.order, self.vocab_size = order, vocab_size
    self.tables = []  # Per order k: a `_count_table`, D_k.
    for k in range(1, order + 1):
      if k == order:
        keys, counts = np.unique(gram_keys(train_ids, k, vocab_size), return_counts=True)
      else:  # Continuation count: distinct left neighbours of each k-gram.
        longer = np.unique(gram_keys(train_ids, k + 1, vocab_size))
        keys, counts = np.unique(longer % vocab_size ** k, return_counts=True)
      n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
      # With no count of 1 the estimate is 0, which would give characters unseen in training
      # probability 0 (infinite bits); a fixed 0.5 then, as when counts of counts are degenerate.
      discount = n1 / (n1 + 2 * n2) if n1 else FALLBACK_DISCOUNT
      self.tables.append((_count_table(keys, counts, vocab_size), float(discount)))
    self.discounts = [discount for _, discount in self.tables]

  def probs(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """P(ids[p] | the order - 1 characters before p) [num]; every p must be >= order - 1."""
    p = np.full(len(positions), 1.0 / self.vocab_size)
    for k, (table, discount) in enumerate(self.tables, start=1):
      grams = gram_keys(ids, k, self.vocab_size, positions)
      count, total, distinct = _scores(table, grams, self.vocab_size)
      seen = total > 0
      safe = np.where(seen, total, 1.0)
      interpolated = (np.maximum(count - discount, 0) + discount * distinct * p) / safe
      p = np.where(seen, interpolated, p)
    return p


def add_k_probs(train_ids: np.ndarray, ids: np.ndarray, positions: np.ndarray, order: int,
                vocab_size: int, k: float) -> np.ndarray:
  """P(ids[p] | previous order - 1 chars) [num] = (c(h x) + k) / (c(h) + k V), raw counts."""
  keys, counts = np.unique(gram_keys(train_ids, order, vocab_size), return_counts=True)
  grams = gram_keys(ids, order, vocab_size, positions)
  count, total, _ = _scores(_count_table(keys, counts, vocab_size), grams, vocab_size)
  return (count + k) / (total + k * vocab_size)


def baselines(corpus: CharCorpus, window: int, order: int = 5) -> dict:
  """Bits/char of every baseline on the validation and test texts of `corpus`."""
  v, train = corpus.vocab.size, corpus.train_ids
  held = {'val': corpus.val_ids, 'test': corpus.test_ids}
  positions = {part: held_out_targets(ids, window) for part, ids in held.items()}
  if window < order - 1 or not all(len(p) for p in positions.values()):
    raise UserError(f'the n-gram context ({order - 1} characters) must fit in a window of {window}'
                    ', and both held-out texts need a window; lower --order or the window.')
  kn = KneserNey(train, order, v)
  add_k = {k: {part: bits_per_char(add_k_probs(train, held[part], positions[part], order, v, k))
               for part in held} for k in ADD_K_GRID}
  best_k = min(ADD_K_GRID, key=lambda k: add_k[k]['val'])  # Chosen on validation only.
  row = lambda fn: {f'{part}_bpc': bits_per_char(fn(part)) for part in held}
  return {
      'uniform': {f'{part}_bpc': math.log2(v) for part in held},
      'unigram': row(lambda part: unigram_probs(train, held[part][positions[part]], v)),
      f'kneser_ney_{order}': {**row(lambda part: kn.probs(held[part], positions[part])),
                              'discounts': kn.discounts},
      f'add_k_{order}': {'val_bpc': add_k[best_k]['val'], 'test_bpc': add_k[best_k]['test'],
                         'k': best_k, 'val_bpc_by_k': {str(k): add_k[k]['val'] for k in add_k}},
      'vocab_size': v, 'train_chars': len(train), 'order': order, 'window': window,
      'val_windows': len(positions['val']), 'test_windows': len(positions['test']),
  }


def run(config: ml_collections.ConfigDict, order: int = 5) -> dict:
  """The baselines on the split `config` gives (its data fields), with that split recorded."""
  d = config.data
  split = {name: d[name] for name in ('val_fraction', 'test_fraction', 'split_seed',
                                      'limit_messages')}
  return {**baselines(input_pipeline.load_corpus(config), d.window, order), 'split': split}


def main(argv) -> None:
  del argv
  config = flags.FLAGS.config
  if flags.FLAGS.data_dir:
    config.data.dir = flags.FLAGS.data_dir
  out = Path(flags.FLAGS.out) if flags.FLAGS.out else None
  run_and_write(lambda: run(config, flags.FLAGS.order), out)


def run_and_write(compute, out: Path | None) -> None:
  """Prints `compute()` as JSON and writes it to `out`; a `UserError` exits 2 with one line."""
  try:
    results = compute()
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(json.dumps(results, indent=1))
  if out:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    print(f'wrote {out}', file=sys.stderr)


if __name__ == '__main__':  # Flags only for the command: importing the module defines none.
  config_flags.DEFINE_config_file('config', str(CONFIG_DIR / 'textgen_lstm.py'),
                                  'A text generator config: its data fields give the split and '
                                  'the window.')
  flags.DEFINE_string('data_dir', '', 'Data root with sms_spam/ (default: looked up as for '
                      'training).')
  flags.DEFINE_string('out', 'runs/textgen_baselines.json', 'Where to write the JSON.')
  flags.DEFINE_integer('order', 5, 'Order of the n-gram models (context: order - 1).')
  app.run(main)
