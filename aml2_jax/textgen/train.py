"""The text generator's training: state, jitted step, validation, results, restore.

Held-out loss is the study's quantity for both objectives, the cross-entropy (nats) of the
character after each window; bits per character is that over ln 2 (docs/textgen.md).
"""

import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import console
from aml2_jax.datasets import char_corpus
from aml2_jax.datasets.char_corpus import CharCorpus, Vocabulary
from aml2_jax.plotting.curves import plot_curves
from aml2_jax.textgen import generate, optim
from aml2_jax.textgen.input_pipeline import (held_out_starts, load_corpus, save_vocabulary,
                                             train_starts)
from aml2_jax.textgen.models import CharModel, make_model
from aml2_jax.training import inference, loop, restore
from aml2_jax.runtime import storage
from aml2_jax.jsonio import read_jsonl
from aml2_jax.runtime.metrics_logging import MetricLogger, write_json
from aml2_jax.training.param_summary import count_params
from aml2_jax.training.train_state import TrainState, step_key

BEST_METRIC = 'val_loss'
CONFIG_FILES = {'simple': 'configs/textgen_rnn.py', 'lstm': 'configs/textgen_lstm.py'}


# --- State --------------------------------------------------------------------------------

def create_train_state(config: ml_collections.ConfigDict, vocab_size: int,
                       steps_per_epoch: int = 1) -> TrainState:
  """A fresh state; `steps_per_epoch` sets a schedule's length (not the state's structure)."""
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  ids = jnp.zeros((1, config.data.window), jnp.int32)
  # Jitted: eager init runs the orthogonal initialiser's QR op by op, seconds slower.
  model = make_model(config, vocab_size)
  params = jax.jit(model.init)(init_key, ids)['params']
  return TrainState.create(apply_fn=model.apply, params=params,
                           tx=optim.make_optimizer(config, steps_per_epoch), key=run_key)


# --- Steps ----------------------------------------------------------------------------------


def train_step(state: TrainState, data: dict, batch_idx: jax.Array, *, all_steps: bool,
               window: int, learning_rate, offsets: tuple[int, int] | None = None):
  """One optimizer step on the windows `data['starts'][batch_idx]` of `data['text']`.

  Args:
    state: the train state.
    data: 'text' int32 [num_chars] and window 'starts' int32 [num_windows].
    batch_idx: int32 [batch].
    all_steps, window: the model's objective (every next character or the last) and window.
    learning_rate: a float, or a schedule of the step (for the logged 'lr').
    offsets: (seed, steps_per_epoch) to move the starts by the epoch's random offset round the
      cyclic text (`config.data.random_offsets`); None for fixed windows.
  Returns:
    The new state and 'loss' (mean cross-entropy, nats), 'grad_norm' (before clipping) and 'lr'
    (the rate in force, with the plateau's scale).
  """
  starts = data['starts'][batch_idx]
  if offsets is not None:
    seed, steps_per_epoch = offsets
    offset = char_corpus.epoch_offset(seed, state.step // steps_per_epoch, window)
    starts = char_corpus.offset_starts(starts, offset, data['text'].shape[0])
  ids = char_corpus.gather_windows(data['text'], starts, window, wrap=offsets is not None)
  inputs = ids[:, :-1]
  targets = ids[:, 1:] if all_steps else ids[:, -1]

  def loss_fn(params):
    _, logits = state.apply_fn({'params': params}, inputs, train=True,
                               rngs={'dropout': step_key(state)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  rate = learning_rate(state.step) if callable(learning_rate) else learning_rate
  state = state.apply_gradients(grads=grads, value=loss)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
             'lr': rate * optim.plateau_scale(state.opt_state)}
  return state, metrics


@functools.cache
def window_nll_fn(model: CharModel, window: int, batch_size: int):
  """`(params, text [num_chars], starts [num]) -> [nll [num]]`: cross-entropy (nats) of the
  character after each window; compiled once per model and process."""
  last_step = model.clone(all_steps=False)

  def nll(params, text, starts):
    ids = char_corpus.gather_windows(text, starts, window)
    _, logits = last_step.apply({'params': params}, ids[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, -1])

  batched = inference.batched(lambda params_and_text, starts: nll(*params_and_text, starts),
                              batch_size)
  return lambda params, text, starts: batched((params, text), starts)


def window_nll(config: ml_collections.ConfigDict, model: CharModel, params, ids: np.ndarray,
               stride: int = 1) -> np.ndarray:
  """Cross-entropy (nats) [num] of the character after every `stride`-th window of `ids`."""
  nll = window_nll_fn(model, config.data.window, config.eval.batch_size)
  return np.asarray(nll(params, jnp.asarray(ids), held_out_starts(config, ids, stride))[0])


def validate(config: ml_collections.ConfigDict, model: CharModel, params, ids: np.ndarray,
             stride: int = 1, part: str = 'val') -> dict[str, float]:
  """{'<part>_loss', '<part>_bpc'} on every `stride`-th window of a held-out text."""
  loss = float(np.mean(window_nll(config, model, params, ids, stride)))
  return {f'{part}_loss': loss, f'{part}_bpc': loss / math.log(2)}


# --- Training -------------------------------------------------------------------------------


def model_meta(config: ml_collections.ConfigDict, vocab: Vocabulary) -> dict:
  # Dropout options left at 0 are left out, so older runs still match.
  meta = {**restore.checkpoint_meta(config, 'textgen', new_model_fields=dict.fromkeys(
              OPTIONAL_DROPOUT, 0), schedule_spans_run=config.optim.schedule != 'constant'),
          'objective': config.objective,
          'window': config.data.window, 'vocab_sha256': vocab.digest(),
          'split': {'val_fraction': config.data.val_fraction,
                    'test_fraction': config.data.test_fraction, 'seed': config.data.split_seed,
                    'limit_messages': config.data.limit_messages, 'by': 'normalised text'},
          'max_windows': config.data.max_windows}
  if config.data.random_offsets:  # Older runs lack the key.
    meta['random_offsets'] = True
  return meta


# What a checkpoint must agree on to be sampled from (the rest of the meta matters for resuming).
SAMPLING_META = ('experiment', 'model', 'window', 'vocab_sha256')
OPTIONAL_DROPOUT = ('input_dropout', 'recurrent_dropout')


def build_task(config: ml_collections.ConfigDict, corpus: CharCorpus) -> loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  model = make_model(config, corpus.vocab.size)
  starts = train_starts(config, corpus)
  steps_per_epoch = len(starts) // config.batch_size
  offsets = (config.seed, max(steps_per_epoch, 1)) if config.data.random_offsets else None
  return loop.TrainTask(
      state=create_train_state(config, corpus.vocab.size, steps_per_epoch),
      train_step=functools.partial(train_step, all_steps=model.all_steps,
                                   window=config.data.window,
                                   learning_rate=optim.learning_rate(config, steps_per_epoch),
                                   offsets=offsets),
      data={'text': corpus.train_ids, 'starts': starts}, num_examples=len(starts),
      meta=model_meta(config, corpus.vocab))


def epoch_hooks(config, workdir: Path, corpus: CharCorpus) -> loop.EpochHooks:
  """Validation (every `config.eval.stride`-th window) and a few samples after every epoch."""
  model = make_model(config, corpus.vocab.size)

  def evaluate(state: TrainState) -> dict[str, float]:
    metrics = validate(config, model, optim.eval_params(state), corpus.val_ids,
                       config.eval.stride)
    console.say(f'validation: loss {metrics["val_loss"]:.4f} nats, {metrics["val_bpc"]:.4f} '
                f'bits/char; lr scale {float(optim.plateau_scale(state.opt_state)):.4g}')
    return metrics

  report = functools.partial(report_epoch, config, workdir, model, corpus.vocab)
  return loop.EpochHooks(evaluate=evaluate, report=report)


def report_epoch(config, workdir: Path, model: CharModel, vocab: Vocabulary, state: TrainState,
                 epoch: int, logger: MetricLogger) -> None:
  """A few samples of the epoch's model, to TensorBoard and `samples.txt`, every
  `config.sample.every_epochs` epochs and after the last."""
  if (epoch + 1) % config.sample.every_epochs and epoch + 1 != config.num_epochs:
    return
  sampler = generate.sampler_for(model, config.data.window)
  lines = []
  for i, prompt in enumerate(config.sample.prompts):
    kept, text = generate.generate_text(sampler, optim.eval_params(state), vocab, prompt,
                                        config.sample.length, config.sample.temperature,
                                        seed=config.seed + i)
    lines.append(f'{kept}|{text}')
  header = f'epoch {epoch + 1}, temperature {config.sample.temperature} ("|" ends the prompt):'
  if console.is_main_process():
    with storage.writing(workdir / 'samples.txt', '--workdir'), \
         open(workdir / 'samples.txt', 'a', encoding='utf-8') as f:
      f.write('\n'.join([header] + lines) + '\n\n')
  logger.text(int(state.step), 'samples', '\n\n'.join(f'    {line}' for line in lines))
  console.say('\n'.join([header] + [f'  {line}' for line in lines]))


def train(config: ml_collections.ConfigDict, workdir: Path) -> dict:
  """Trains (resuming if possible); writes results.json for the best checkpoint."""
  corpus = load_corpus(config)
  save_vocabulary(workdir, corpus.vocab)
  task = build_task(config, corpus)
  resumed_from = restore.refuse_incompatible(workdir, task.meta) or 0  # 0: a fresh run.
  start = time.time()
  state = loop.train_in_workdir(task, config, workdir, epoch_hooks(config, workdir, corpus),
                                BEST_METRIC, 'min')
  steps_per_epoch = task.num_examples // config.batch_size
  plot_curves(workdir, ['train_loss', 'val_bpc', 'train_lr'])
  params, best_step = restore_best(config, workdir, corpus.vocab)
  extra = {'wall_s': round(time.time() - start, 1), 'epochs': int(state.step) // steps_per_epoch,
           'best_epoch': best_step // steps_per_epoch, 'steps_per_epoch': steps_per_epoch,
           'train_windows': task.num_examples, 'resumed_from_step': resumed_from,
           'train_loss': _logged(workdir, best_step, 'train_loss')}
  return write_results(config, workdir, params, corpus, extra)


def _logged(workdir: Path, step: int, name: str) -> float | None:
  """The value of `name` logged at `step` in metrics.jsonl (the latest such line)."""
  value = None
  for record in read_jsonl(workdir / 'metrics.jsonl'):  # Without a torn last line.
    if record.get('step') == step and name in record:
      value = record[name]
  return value


def restore_best(config, workdir: Path, vocab: Vocabulary, meta_keys=None) -> tuple[dict, int]:
  """(params, step) of the checkpoint with the lowest validation loss (else the latest); the
  params are `optim.eval_params`."""
  restored = restore.restore_trained(
      workdir, lambda: create_train_state(config, vocab.size), model_meta(config, vocab),
      train_command=f'python launch.py --config={CONFIG_FILES[config.model.cell]}',
      best_metric=BEST_METRIC, meta_keys=meta_keys)
  return optim.eval_params(restored.state), restored.step


def write_results(config, workdir: Path, params, corpus: CharCorpus, extra: dict) -> dict:
  """Validation and test figures of `params` on every window of each, merged with `extra`."""
  model = make_model(config, int(params['dense']['bias'].shape[0]))
  results = {**extra, **validate(config, model, params, corpus.val_ids),
             **validate(config, model, params, corpus.test_ids, part='test'),
             'val_windows': len(held_out_starts(config, corpus.val_ids, 1)),
             'test_windows': len(held_out_starts(config, corpus.test_ids, 1)),
             'checkpoint_chosen_on': 'val_loss (every config.eval.stride-th validation window)',
             'objective': config.objective, 'cell': config.model.cell,
             'num_params': count_params(params)}
  write_json(workdir / 'results.json', results)
  console.say(f'textgen {config.model.cell} ({config.objective}): validation '
              f'{results["val_bpc"]:.4f} bits/char, test {results["test_bpc"]:.4f} bits/char '
              f'(loss {results["test_loss"]:.4f} nats); {results["num_params"]:,} params')
  return results
