"""The spam classifier's training for one seed: state, jitted step, evaluation, restore.

Three parts (see `input_pipeline`): the per-epoch `val_*` metrics are on the validation part,
carved from training; the test part is scored once, at the end, by the epoch used. That epoch is
the last (the study's 10 epochs) unless `config.keep_best_val_epoch`, which uses the epoch of the
lowest validation loss; the best checkpoint by validation loss is kept either way, so `eval` can
switch. results.json says which epoch was used.
"""

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import console
from aml2_jax.datasets import sms
from aml2_jax.datasets.tokenizer import Tokenizer
from aml2_jax.errors import UserError
from aml2_jax.plotting.curves import plot_curves
from aml2_jax.spam import metrics
from aml2_jax.spam.input_pipeline import (SPLIT_FILE, SpamSplit, describe, prepare_split,
                                          protocol, split_record, vocab_digest)
from aml2_jax.spam.models import SpamClassifier, make_model
from aml2_jax.training import inference, loop, restore
from aml2_jax.runtime.metrics_logging import write_json
from aml2_jax.training.param_summary import count_params
from aml2_jax.training.train_state import TrainState, step_key
from aml2_jax.runtime.workdir import WorkdirLock, write_config

TOKENIZER_FILE = 'tokenizer.json'
THRESHOLD = 0.5  # P(spam) above which a message is labelled spam.
EVAL_BATCH = 256  # Messages per jitted inference call (one compiled shape).
CONFIG_FILES = {'simple': 'configs/spam_rnn.py', 'lstm': 'configs/spam_lstm.py'}
BEST_METRIC = 'val_loss'  # Picks the kept best checkpoint (used with config.keep_best_val_epoch).
EPOCH_LINE = ('val_loss', 'val_accuracy', 'val_f1')  # The validation figures printed per epoch.


def make_optimizer(config: ml_collections.ConfigDict,
                   total_steps: int = 1) -> optax.GradientTransformation:
  """Adam at the config's rate: constant (the study's), or cosine-decayed to 0 at `total_steps`."""
  rate = config.optim.learning_rate
  if config.optim.schedule == 'cosine':
    rate = optax.cosine_decay_schedule(rate, decay_steps=max(total_steps, 1))
  return optax.adam(rate, eps=config.optim.eps)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params(model: SpamClassifier, key: jax.Array, maxlen: int) -> dict:
  # Jitted and cached per (model, maxlen): eager init runs the scan op by op, several times slower.
  return model.init(key, jnp.zeros((1, maxlen), jnp.int32))['params']


def create_train_state(config: ml_collections.ConfigDict, total_steps: int = 1) -> TrainState:
  # The optimizer state's structure does not depend on total_steps, so restores may omit it.
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  model = make_model(config)
  return TrainState.create(apply_fn=model.apply, params=_init_params(model, init_key,
                                                                     config.data.maxlen),
                           tx=make_optimizer(config, total_steps), key=run_key)


def train_step(state: TrainState, data: dict, batch_idx: jax.Array) -> tuple[TrainState, dict]:
  """One Adam step on the mean binary cross-entropy of logits; `data` holds 'ids' int32
  [num, maxlen] and 'labels' int32 [num], gathered with `batch_idx` int32 [batch]."""
  ids, labels = data['ids'][batch_idx], data['labels'][batch_idx].astype(jnp.float32)

  def loss_fn(params):
    logits = state.apply_fn({'params': params}, ids, train=True,
                            rngs={'dropout': step_key(state)})
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return loss, jnp.mean((logits > 0) == (labels > 0.5))

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics_ = {'loss': loss, 'accuracy': accuracy, 'grad_norm': optax.tree.norm(grads)}
  return state.apply_gradients(grads=grads), metrics_


def build_task(config: ml_collections.ConfigDict, split: SpamSplit) -> loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  total_steps = config.num_epochs * steps_per_epoch(config, split)
  return loop.TrainTask(
      state=create_train_state(config, total_steps), train_step=train_step,
      data={'ids': split.train_ids, 'labels': split.train_labels},
      num_examples=len(split.train_labels))


@functools.cache
def logits_fn(model: SpamClassifier):
  """`(params, ids [num, maxlen]) -> [logits [num]]`, compiled once per model and process."""
  return inference.batched(lambda params, ids: model.apply({'params': params}, ids), EVAL_BATCH)


def evaluate_split(model: SpamClassifier, params, ids: np.ndarray, labels: np.ndarray) -> dict:
  """'loss' and every `metrics.binary_metrics` entry of the model on one split."""
  (logits,) = logits_fn(model)(params, ids)
  # Logit 0 is P(spam) = 0.5; logits also keep the AUCs free of float32 ties at P = 1.
  threshold = float(np.log(THRESHOLD / (1 - THRESHOLD)))
  return {'loss': metrics.bce_from_logits(labels, logits),
          **metrics.binary_metrics(labels, logits, threshold=threshold)}


def checkpoint_meta(config: ml_collections.ConfigDict, digest: str) -> dict:
  """The checkpoint's meta record (`restore.checkpoint_meta`), with the vocabulary and the data
  the run trains on (the vocabulary alone can coincide; folds only if on: old ones still fit)."""
  d = config.data
  data = {'dedup': d.dedup, 'limit': d.limit, 'test_fraction': d.test_fraction,
          'val_fraction': d.val_fraction, 'split_seed': d.split_seed,
          'tokenizer_fit': d.tokenizer_fit,
          **({'cv_folds': d.cv_folds, 'cv_fold': d.cv_fold} if d.cv_folds else {})}
  meta = restore.checkpoint_meta(config, 'spam',
                                 schedule_spans_run=config.optim.schedule == 'cosine')
  return {**meta, 'num_words': d.num_words, 'maxlen': d.maxlen, 'vocab_sha256': digest,
          'data': data}


def train_run(config: ml_collections.ConfigDict, run_dir: Path, corpus: sms.SmsSpam) -> dict:
  """Trains (or resumes) one seed in `run_dir`, then writes its `results.json`."""
  run_dir.mkdir(parents=True, exist_ok=True)
  with WorkdirLock(run_dir):
    split = prepare_split(corpus, config)
    task, resumed_from = prepare_run(config, run_dir, corpus, split)
    hooks = loop.EpochHooks(evaluate=functools.partial(epoch_metrics, config, split),
                            console_metrics=EPOCH_LINE)
    start = time.perf_counter()
    state = loop.train_in_workdir(task, config, run_dir, hooks, best_metric=BEST_METRIC)
    extra = {'train_wall_s': round(time.perf_counter() - start, 1),
             'resumed_from_step': resumed_from}
    return finish_run(config, run_dir, split, state.params, int(state.step), extra)


def prepare_run(config: ml_collections.ConfigDict, run_dir: Path, corpus: sms.SmsSpam,
                split: SpamSplit) -> tuple[loop.TrainTask, int]:
  """(the task, the step it resumes from or 0) of one seed, after writing its run files.

  Writes the config, tokenizer and split into `run_dir` (which must exist and be locked),
  refusing first a checkpoint there that was made for another config (`restore.checkpoint_meta`).
  """
  console.say(describe(config, corpus, split))
  meta = checkpoint_meta(config, vocab_digest(split.tokenizer))
  task = dataclasses.replace(build_task(config, split), meta=meta)
  # Refuse before replacing the config and vocabulary the existing checkpoint was made with.
  resumed_from = restore.refuse_incompatible(run_dir, meta)
  write_config(run_dir, config)
  if console.is_main_process():
    split.tokenizer.save(run_dir / TOKENIZER_FILE)
  write_json(run_dir / SPLIT_FILE, split_record(corpus, split))
  return task, resumed_from or 0


def finish_run(config: ml_collections.ConfigDict, run_dir: Path, split: SpamSplit, params,
               step: int, extra: dict) -> dict:
  """Plots a trained seed's curves and writes its results (of the epoch the config selects)."""
  plot_curves(run_dir, ['train_loss', 'val_loss', 'val_accuracy', 'val_f1'])
  if config.keep_best_val_epoch:
    params, _, _, step = restore_for_eval(config, run_dir, run_dir.parent)
  return write_run_results(config, run_dir, params, split, step, extra)


def steps_per_epoch(config, split: SpamSplit) -> int:
  return len(split.train_labels) // config.batch_size  # The loop drops the partial batch.


def epoch_metrics(config, split: SpamSplit, state: TrainState) -> dict:
  """The validation metrics logged after every epoch (scalars only), with a one-line print."""
  metrics_ = evaluate_split(make_model(config), state.params, split.val_ids, split.val_labels)
  metrics_.pop('confusion_matrix')
  epoch = int(state.step) // steps_per_epoch(config, split)
  console.say(f'seed {config.seed} epoch {epoch}: val loss {metrics_["loss"]:.4f}  '
              f'acc {metrics_["accuracy"]:.4f}  precision {metrics_["precision"]:.4f}  '
              f'recall {metrics_["recall"]:.4f}  f1 {metrics_["f1"]:.4f}')
  return {f'val_{k}': v for k, v in metrics_.items()}


def write_run_results(config, run_dir: Path, params, split: SpamSplit, step: int,
                      extra: dict) -> dict:
  """Test metrics of `params` (saved at `step`) and the run's facts into results.json."""
  model = make_model(config)
  metrics_ = evaluate_split(model, params, split.test_ids, split.test_labels)
  val = evaluate_split(model, params, split.val_ids, split.val_labels)
  results = {
      **{f'test_{k}': v for k, v in metrics_.items()},
      'val_loss': val['loss'], 'val_accuracy': val['accuracy'],
      'epoch_used': step // steps_per_epoch(config, split), 'epochs_trained': config.num_epochs,
      'epoch_selection': ('lowest validation loss' if config.keep_best_val_epoch
                          else 'last epoch'),
      'num_params': count_params(params),
      'num_train': len(split.train_labels), 'num_val': len(split.val_labels),
      'num_test': len(split.test_labels),
      'num_held_out_token_twins_dropped': len(split.index['dropped']),
      'seed': config.seed, 'split_seed': config.data.split_seed, 'dedup': config.data.dedup,
      'split_protocol': protocol(config),
      'tokenizer_fit': config.data.tokenizer_fit, 'vocab_sha256': vocab_digest(split.tokenizer),
      **extra,
  }
  write_json(run_dir / 'results.json', results)
  return results


def restore_for_eval(config, run_dir: Path,
                     workdir: Path) -> tuple[dict, Tokenizer, dict, int]:
  """(params, tokenizer, saved meta, step) of a trained seed, for eval and predict.

  The params are the epoch `config.keep_best_val_epoch` selects (see the module docstring); a
  different model or vocabulary is refused, the data and the optimizer are not checked.
  """
  train_command = f'python launch.py --config={CONFIG_FILES[config.model.cell]}'
  if not any(p.name.isdigit() for p in (run_dir / 'checkpoints').glob('*')):
    others = sorted(p.parent.name for p in Path(workdir).glob('seed_*/checkpoints'))
    hint = f' (found {", ".join(others)}: pick one with --config.seed)' if others else ''
    raise UserError(f'no trained spam model in {run_dir}{hint}; train it first: {train_command} '
                    f'--workdir={workdir}')
  tokenizer = Tokenizer.load(run_dir / TOKENIZER_FILE)
  digest = vocab_digest(tokenizer)
  meta = checkpoint_meta(config, digest)
  restored = restore.restore_trained(
      run_dir, lambda: create_train_state(config), meta, train_command=train_command,
      best_metric=BEST_METRIC if config.keep_best_val_epoch else '',
      meta_keys=[k for k in meta if k not in ('vocab_sha256', 'data')])
  if restored.meta.get('vocab_sha256') != digest:
    trained_with = str(restored.meta.get('vocab_sha256'))[:12]
    raise UserError(f'{run_dir / TOKENIZER_FILE} is not the vocabulary the checkpoint was '
                    f'trained with (SHA-256 {digest[:12]}... vs {trained_with}...); retrain in '
                    f'{workdir} or restore that file.')
  return restored.state.params, tokenizer, restored.meta, restored.step
