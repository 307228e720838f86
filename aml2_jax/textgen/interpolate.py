"""A trained network and the Kneser-Ney n-gram, mixed with one weight picked on validation.

`python -m aml2_jax.textgen.interpolate --workdir=RUN_DIR [--out=FILE] [--order=5]` prints and
writes validation and test bits/char of the network, the n-gram and the mixture
(docs/textgen.md, "With the 5-gram").
"""

import json
import math
from pathlib import Path

from absl import app, flags
import ml_collections
import numpy as np

from aml2_jax.errors import UserError
from aml2_jax.textgen import baselines, input_pipeline, train as train_lib
from aml2_jax.textgen.models import make_model

WEIGHTS = tuple(np.round(np.arange(0.0, 1.0001, 0.05), 2))  # The network's weight, 0 .. 1.


def mixture_bpc(network_nll: np.ndarray, ngram_probs: np.ndarray, weight: float) -> float:
  """Bits/char of w P_network + (1 - w) P_ngram, from network nats [num] and P_ngram [num]."""
  p = weight * np.exp(-np.asarray(network_nll, np.float64)) + (1 - weight) * ngram_probs
  return baselines.bits_per_char(p)


def pick_weight(val_nll: np.ndarray, val_probs: np.ndarray) -> tuple[float, dict]:
  """(the weight of lowest validation bits/char, {weight: validation bits/char})."""
  by_weight = {float(w): mixture_bpc(val_nll, val_probs, w) for w in WEIGHTS}
  return min(by_weight, key=by_weight.get), by_weight


def load_run_config(workdir: Path) -> ml_collections.ConfigDict:
  """The config a run saved (`config.json`, after its command-line overrides)."""
  path = Path(workdir) / 'config.json'
  if not path.is_file():
    raise UserError(f'no config.json in {workdir}; give the workdir of a trained text run.')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  if config.get('experiment') != 'textgen':
    raise UserError(f'{workdir} holds a {config.get("experiment")!r} run, not a textgen one.')
  return config


def run(workdir: Path, order: int = 5) -> dict:
  """Network, n-gram and mixture bits/char on the validation and test texts of a run's split."""
  config = load_run_config(workdir)
  corpus = input_pipeline.load_corpus(config)
  params, best_step = train_lib.restore_best(config, workdir, corpus.vocab)
  kn = baselines.KneserNey(corpus.train_ids, order, corpus.vocab.size)
  held = {'val': corpus.val_ids, 'test': corpus.test_ids}
  model = make_model(config, corpus.vocab.size)
  nll = {part: train_lib.window_nll(config, model, params, ids).astype(np.float64)
         for part, ids in held.items()}
  probs = {part: kn.probs(ids, baselines.held_out_targets(ids, config.data.window))
           for part, ids in held.items()}
  weight, by_weight = pick_weight(nll['val'], probs['val'])  # Validation only.
  bpc = lambda fn: {f'{part}_bpc': fn(part) for part in held}
  return {
      'val_bpc': mixture_bpc(nll['val'], probs['val'], weight),
      'test_bpc': mixture_bpc(nll['test'], probs['test'], weight),
      'network_weight': weight, 'val_bpc_by_weight': {str(w): v for w, v in by_weight.items()},
      'network': bpc(lambda part: float(np.mean(nll[part]) / math.log(2))),
      f'kneser_ney_{order}': bpc(lambda part: baselines.bits_per_char(probs[part])),
      'run': Path(workdir).name, 'best_step': best_step, 'cell': config.model.cell,
      'objective': config.objective, 'order': order,
      'val_windows': len(nll['val']), 'test_windows': len(nll['test']),
      'vocab_sha256': corpus.vocab.digest(),
  }


def main(argv) -> None:
  del argv
  workdir = Path(flags.FLAGS.workdir)
  out = Path(flags.FLAGS.out or workdir / 'interpolated.json')
  baselines.run_and_write(lambda: run(workdir, flags.FLAGS.order), out)


if __name__ == '__main__':  # Flags only for the command: importing the module defines none.
  flags.DEFINE_string('workdir', None, 'A trained text run.', required=True)
  flags.DEFINE_string('out', '', 'Where to write the JSON (default WORKDIR/interpolated.json).')
  flags.DEFINE_integer('order', 5, 'Order of the Kneser-Ney model.')
  app.run(main)
