"""Count-based baselines of the text generator's objective, on its own split and windows.

The objective is the next character after each `config.data.window`-character window of a
held-out text (validation or test), in bits per character, as `train.validate` scores the
networks. A count model of order n sees the last n - 1 characters of the window. Counts come from
the training text only:

  uniform       1 / vocabulary size.
  unigram       character frequencies, add-one smoothed over the vocabulary.
  kneser_ney    interpolated Kneser-Ney of order `--order` (5): absolute discount
                D_k = n1 / (n1 + 2 n2) per order from the counts of counts, continuation counts
                below the top order, the uniform distribution below order 1 (Chen & Goodman
                1998). Nothing is tuned.
  add_k         the same order's raw counts, (c(h x) + k) / (c(h) + k V), k chosen on the
                validation text from `ADD_K_GRID`.

Run:      python -m aml2_jax.textgen.baselines [--data_dir=DIR] [--out=FILE]
              [--config=configs/textgen_lstm.py] [--config.data.split_seed=1] [--order=5]
Expect:   a JSON of bits/char on the validation and test texts, printed and written to --out
          (default runs/textgen_baselines.json), in a few seconds. UCI corpus, split seed 0
          (validation / test): unigram 4.85 / 4.91, kneser_ney_5 2.49 / 2.38, add_k_5 (k 0.03)
          3.14 / 3.00; uniform 6.87.
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


def gram_keys(ids: np.ndarray, n: int, base: int) -> np.ndarray:
  """int64 [len(ids) - n + 1]: every n-gram of `ids` as one base-`base` number (first id high)."""
  if base ** n >= 2 ** 63:
    raise ValueError(f'order {n} over {base} symbols does not fit in int64 keys')
  ids = np.asarray(ids, np.int64)
  keys = np.zeros(max(len(ids) - n + 1, 0), np.int64)
  for j in range(n):
    keys = keys * base + ids[j:j + len(keys)]
  return keys


def held_out_targets(ids: np.ndarray, window: int) -> np.ndarray:
  """Positions int64 [num_windows] of the character after each next-char window of `ids`."""
  return np.arange(window, len(ids), dtype=np.int64)


def context_keys(ids: np.ndarray, positions: np.ndarray, n: int, base: int) -> np.ndarray:
  """int64 [num]: the n-gram ending at each position (its last n - 1 characters, then it)."""
  ids = np.asarray(ids, np.int64)
  keys = np.zeros(len(positions), np.int64)
  for j in range(n - 1, -1, -1):
    keys = keys * base + ids[positions - j]
  return keys


def bits_per_char(probs: np.ndarray) -> float:
  """Mean -log2 of the probabilities given to the targets."""
  return float(-np.mean(np.log2(probs)))


def _lookup(table_keys: np.ndarray, table_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """table_values at each of `keys` in sorted `table_keys`; 0 where a key is absent."""
  if not len(table_keys):
    return np.zeros(len(keys), table_values.dtype)
  pos = np.searchsorted(table_keys, keys).clip(0, len(table_keys) - 1)
  return np.where(table_keys[pos] == keys, table_values[pos], 0)


def unigram_probs(train_ids: np.ndarray, targets: np.ndarray, vocab_size: int) -> np.ndarray:
  """P(target) [num] under add-one smoothed character frequencies of the training text."""
  counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
  return (counts[targets] + 1) / (counts.sum() + vocab_size)


class KneserNey:
  """Interpolated Kneser-Ney character model of order `order`, fit on `train_ids`.

  For k = 1..order, with h the k - 1 characters before x and P_0 = 1 / V:

    P_k(x | h) = max(c_k(h x) - D_k, 0) / c_k(h) + D_k N_k(h) / c_k(h) * P_{k-1}(x | h')

  where c_k are raw counts at the top order and continuation counts below it (the number of
  distinct characters seen before h x), c_k(h) = sum over x of c_k(h x), N_k(h) the number of
  distinct x with c_k(h x) > 0, h' is h without its first character; P_k = P_{k-1} when
  c_k(h) = 0. D_k = n1 / (n1 + 2 n2) from the counts of counts c_k, or `FALLBACK_DISCOUNT` when no
  k-gram has count 1. Every character of the vocabulary gets a positive probability.
  """

  def __init__(self, train_ids: np.ndarray, order: int, vocab_size: int):
    self.order, self.vocab_size = order, vocab_size
    self.tables = []  # Per order k: (gram keys, counts, context keys, totals, types), D_k.
    for k in range(1, order + 1):
      if k == order:
        keys, counts = np.unique(gram_keys(train_ids, k, vocab_size), return_counts=True)
      else:  # Continuation count: distinct left neighbours of each k-gram.
        longer = np.unique(gram_keys(train_ids, k + 1, vocab_size))
        keys, counts = np.unique(longer % vocab_size ** k, return_counts=True)
      contexts, first = np.unique(keys // vocab_size, return_index=True)
      totals = np.add.reduceat(counts, first) if len(keys) else counts
      types = np.diff(np.append(first, len(keys)))
      n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
      # With no count of 1 the estimate is 0, which would give characters unseen in training
      # probability 0 (infinite bits); a fixed 0.5 then, as when counts of counts are degenerate.
      discount = n1 / (n1 + 2 * n2) if n1 else FALLBACK_DISCOUNT
      self.tables.append(((keys, counts, contexts, totals, types), float(discount)))

  @property
  def discounts(self) -> list[float]:
    return [discount for _, discount in self.tables]

  def probs(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """P(ids[p] | the order - 1 characters before p) [num]; every p must be >= order - 1."""
    p = np.full(len(positions), 1.0 / self.vocab_size)
    for k, ((keys, counts, contexts, totals, types), discount) in enumerate(self.tables, start=1):
      grams = context_keys(ids, positions, k, self.vocab_size)
      count = _lookup(keys, counts, grams).astype(np.float64)
      total = _lookup(contexts, totals, grams // self.vocab_size).astype(np.float64)
      distinct = _lookup(contexts, types, grams // self.vocab_size).astype(np.float64)
      seen = total > 0
      safe = np.where(seen, total, 1.0)
      interpolated = (np.maximum(count - discount, 0) + discount * distinct * p) / safe
      p = np.where(seen, interpolated, p)
    return p


def add_k_probs(train_ids: np.ndarray, ids: np.ndarray, positions: np.ndarray, order: int,
                vocab_size: int, k: float) -> np.ndarray:
  """P(ids[p] | previous order - 1 chars) [num] = (c(h x) + k) / (c(h) + k V), raw counts."""
  keys, counts = np.unique(gram_keys(train_ids, order, vocab_size), return_counts=True)
  contexts, first = np.unique(keys // vocab_size, return_index=True)
  totals = np.add.reduceat(counts, first)
  grams = context_keys(ids, positions, order, vocab_size)
  count = _lookup(keys, counts, grams).astype(np.float64)
  total = _lookup(contexts, totals, grams // vocab_size).astype(np.float64)
  return (count + k) / (total + k * vocab_size)


def baselines(corpus: CharCorpus, window: int, order: int = 5) -> dict:
  """Bits/char of every baseline on the validation and test texts of `corpus` (see module)."""
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
  corpus = input_pipeline.load_corpus(config)
  d = config.data
  split = {'val_fraction': d.val_fraction, 'test_fraction': d.test_fraction,
           'split_seed': d.split_seed, 'limit_messages': d.limit_messages}
  return {**baselines(corpus, d.window, order), 'split': split}


def _define_flags() -> dict:
  """The command's flags; defined only when run as a command, so importing defines none."""
  return {
      'config': config_flags.DEFINE_config_file(
          'config', str(CONFIG_DIR / 'textgen_lstm.py'),
          'A text generator config: its data fields give the split and the window.'),
      'data_dir': flags.DEFINE_string('data_dir', '', 'Data root with sms_spam/ (default: '
                                      'looked up as for training).'),
      'out': flags.DEFINE_string('out', 'runs/textgen_baselines.json', 'Where to write the JSON.'),
      'order': flags.DEFINE_integer('order', 5, 'Order of the n-gram models (context: order - 1).'),
  }


def main(flag_values: dict) -> None:
  config = flag_values['config'].value
  if flag_values['data_dir'].value:
    config.data.dir = flag_values['data_dir'].value
  out = flag_values['out'].value
  run_and_write(lambda: run(config, flag_values['order'].value), Path(out) if out else None)


def run_and_write(compute, out: Path | None) -> None:
  """A command's `compute()` printed as JSON and written to `out`; a `UserError` is one line
  naming the problem and the fix, exit 2, as launch.py prints it."""
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


if __name__ == '__main__':
  _FLAGS = _define_flags()
  app.run(lambda argv: main(_FLAGS))
