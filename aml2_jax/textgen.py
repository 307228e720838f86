"""Experiment: character-level SMS text generation with a SimpleRNN or an LSTM.

`configs/textgen_rnn.py` and `configs/textgen_lstm.py` reproduce the study (RMSProp 0.01, learning
rate x0.2 when the epoch's training loss stops improving, best model kept) and add what it lacked:
5% of the messages held out, with validation loss and bits per character every epoch, and the
faster `all_chars` objective as an option (see `char_corpus`).

Optimizer. Keras' RMSprop divides by sqrt(velocity + epsilon), epsilon inside the root, with rho 0.9
and epsilon 1e-7; `optax.rmsprop` places eps the same way by default (`eps_in_sqrt=True`) but
defaults eps to 1e-8. The configs set eps 1e-7, in the root: Keras' update exactly.

Plateau schedule. `optax.contrib.reduce_on_plateau` is kept out of the optimizer chain (its update
needs the loss) and updated on the host once per epoch, after the epoch, with its mean training
loss (`end_epoch`); its `scale` lives in `TrainState.schedule` and multiplies every update of the
next epoch, as Keras' ReduceLROnPlateau sets the next epoch's learning rate.

Evaluation. Validation loss is the study's quantity on the held-out text for both objectives: the
cross-entropy of the character after each 100-character window, in nats; bits per character is
that over ln 2. Every epoch it is estimated on every `config.eval.stride`-th window (a forward
pass of the window each), and the best checkpoint is the one with the lowest; the best
checkpoint's figures in results.json use every window.

Sampling (`--mode=sample`): see `prompt_context` for how prompts are read, and
`textgen_models.CharSampler` for how the model is run.
"""

import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import char_corpus, config_base, param_summary, plots, sms_data, train_loop
from aml2_jax.char_corpus import CharCorpus, Vocabulary
from aml2_jax.checkpointing import Checkpointer, abstract_like, check_compatible
from aml2_jax.errors import UserError
from aml2_jax.evaluation import map_in_batches
from aml2_jax.metrics_logging import MetricLogger, write_json
from aml2_jax.textgen_models import CharModel, CharSampler, build_model
from aml2_jax.train_state import TrainState, apply_gradients, create_train_state, step_key
from aml2_jax.workdir import WorkdirLock, write_config

CELLS = ('simple', 'lstm')
BEST_METRIC = 'val_loss'
# What a checkpoint must agree on to be sampled from (the rest of the meta matters for resuming).
_SAMPLING_META = ('experiment', 'model', 'window', 'vocab_sha256')


def check_config(config: ml_collections.ConfigDict) -> None:
  config_base.check_base(config)
  if config.objective not in char_corpus.OBJECTIVES:
    raise UserError(f'config.objective={config.objective!r}; use one of '
                    f'{", ".join(char_corpus.OBJECTIVES)}.')
  if config.model.cell not in CELLS:
    raise UserError(f'config.model.cell={config.model.cell!r}; use one of {", ".join(CELLS)}.')
  config_base.check_positive(config, 'model.units', 'model.unroll', 'optim.learning_rate',
                             'optim.eps', 'optim.plateau_patience', 'data.window',
                             'eval.batch_size', 'eval.stride')
  config_base.check_fraction(config, 'model.dropout')
  config_base.check_fraction(config, 'optim.rho')
  config_base.check_fraction(config, 'optim.plateau_factor', allow_zero=False)
  config_base.check_fraction(config, 'data.val_fraction', allow_zero=False)
  for name in ('data.max_windows', 'data.limit_messages', 'sample.length',
               'sample.temperature', 'optim.plateau_atol', 'optim.plateau_rtol'):
    if _field(config, name) < 0:
      raise UserError(f'config.{name} must be >= 0 (set --config.{name}=...).')


def _field(config: ml_collections.ConfigDict, name: str):
  value = config
  for part in name.split('.'):
    value = value[part]
  return value


# --- Data -----------------------------------------------------------------------------------


def load_corpus(config: ml_collections.ConfigDict) -> CharCorpus:
  """The SMS corpus, encoded and split into training and held-out messages."""
  messages = sms_data.load_sms_spam(config.data.dir).texts
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


# --- Model, optimizer, state ----------------------------------------------------------------


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> CharModel:
  return build_model(config.model, vocab_size, all_steps=config.objective == 'all_chars')


def make_tx(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Keras' RMSprop: rho 0.9, epsilon inside the square root (see the module docstring)."""
  o = config.optim
  return optax.rmsprop(o.learning_rate, decay=o.rho, eps=o.eps, eps_in_sqrt=o.eps_in_sqrt)


def make_plateau(config: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
  """Keras' ReduceLROnPlateau as optax's transform; one update per epoch, so patience = epochs."""
  o = config.optim
  return optax.contrib.reduce_on_plateau(factor=o.plateau_factor, patience=o.plateau_patience,
                                         rtol=o.plateau_rtol, atol=o.plateau_atol)


def create_state(config: ml_collections.ConfigDict, vocab_size: int) -> TrainState:
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  ids = jnp.zeros((1, config.data.window), jnp.int32)
  # Jitted: eager init runs the orthogonal initialiser's QR op by op, seconds slower.
  params = jax.jit(make_model(config, vocab_size).init)(init_key, ids)['params']
  return create_train_state(params, make_tx(config), run_key,
                            schedule=make_plateau(config).init(params))


# --- Steps ----------------------------------------------------------------------------------


def train_step(state: TrainState, data: dict, batch_idx: jax.Array, *, model: CharModel,
               tx: optax.GradientTransformation, window: int, learning_rate: float):
  """One RMSProp step on the windows `data['starts'][batch_idx]` of `data['text']`.

  The update is scaled by the plateau schedule's current `scale`. Metrics: 'loss' (mean
  cross-entropy, nats), 'grad_norm', and 'lr' (the learning rate in force).
  """
  ids = char_corpus.gather_windows(data['text'], data['starts'][batch_idx], window)
  inputs = ids[:, :-1]
  targets = ids[:, 1:] if model.all_steps else ids[:, -1]

  def loss_fn(params):
    _, logits = model.apply({'params': params}, inputs, train=True,
                            rngs={'dropout': step_key(state)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  scale = state.schedule.scale
  metrics = {'loss': loss, 'grad_norm': optax.global_norm(grads), 'lr': learning_rate * scale}
  return apply_gradients(state, grads, tx, scale), metrics


def window_nll(params, text: jax.Array, starts: jax.Array, *, model: CharModel,
               window: int) -> jax.Array:
  """Cross-entropy (nats) [batch] of the character after each window."""
  ids = char_corpus.gather_windows(text, starts, window)
  _, logits = model.clone(all_steps=False).apply({'params': params}, ids[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, -1])


def make_validate(config: ml_collections.ConfigDict, model: CharModel, val_ids: np.ndarray,
                  stride: int = 1):
  """`params -> {'val_loss', 'val_bpc'}` on every `stride`-th held-out window."""
  nll = jax.jit(functools.partial(window_nll, model=model, window=config.data.window))
  text, starts = jnp.asarray(val_ids), val_starts(config, val_ids, stride)

  def validate(params) -> dict[str, float]:
    (losses,) = map_in_batches(lambda s: nll(params, text, s), starts,
                               batch_size=config.eval.batch_size)
    loss = float(np.mean(losses))
    return {'val_loss': loss, 'val_bpc': loss / math.log(2)}

  return validate


def end_epoch(state: TrainState, train_metrics: dict, *, update_plateau) -> TrainState:
  """Feeds the epoch's mean training loss to the plateau schedule (Keras monitors 'loss')."""
  return state.replace(schedule=update_plateau(state.schedule, train_metrics['loss']))


def make_plateau_update(config: ml_collections.ConfigDict):
  """`(schedule_state, epoch_loss) -> schedule_state`, jitted so it keeps the state's placement."""
  plateau = make_plateau(config)
  # The transform scales `updates`; only its state is wanted here, so it is given none.
  return jax.jit(lambda s, loss: plateau.update(updates={}, state=s, value=loss)[1])


# --- Sampling -------------------------------------------------------------------------------


def prompt_context(vocab: Vocabulary, prompt: str) -> tuple[list[int], str, str]:
  """The ids a prompt gives the model, the prompt as used, and the characters dropped from it.

  The rule: a prompt begins a new message, so the context is the end character (the close of a
  previous message, as everywhere in the corpus) followed by the prompt. An empty prompt is just
  that end character: the model writes a whole message. A prompt shorter than the window is used
  as it is (the model runs from a zero state over it, as over the start of a training window);
  of a longer one only the last `window` characters matter. Characters outside the vocabulary
  are dropped (and reported); a newline in the prompt is the end character and ends a message.
  """
  kept, dropped = vocab.known(prompt)
  return [vocab.end_id] + vocab.encode(kept).tolist(), kept, dropped


def generate_text(sampler: CharSampler, params, vocab: Vocabulary, prompt: str, length: int,
                  temperature: float, seed: int, stop_at_end: bool = True) -> tuple[str, str]:
  """(the prompt as used, the generated continuation); see `prompt_context` for the rule."""
  context, kept, _ = prompt_context(vocab, prompt)
  ids = sampler.generate(params, context, length, temperature, seed,
                         stop_id=vocab.end_id if stop_at_end else None)
  return kept, vocab.decode(ids)


def _report_epoch(config, workdir: Path, sampler: CharSampler, vocab: Vocabulary,
                  state: TrainState, epoch: int, logger: MetricLogger) -> None:
  """A few samples of the epoch's model, to TensorBoard and `samples.txt`."""
  lines = []
  for i, prompt in enumerate(config.sample.prompts):
    kept, text = generate_text(sampler, state.params, vocab, prompt, config.sample.length,
                               config.sample.temperature, seed=config.seed + i)
    lines.append(f'{kept}|{text}')
  header = f'epoch {epoch + 1}, temperature {config.sample.temperature} ("|" ends the prompt):'
  with open(workdir / 'samples.txt', 'a', encoding='utf-8') as f:
    f.write('\n'.join([header] + lines) + '\n\n')
  logger.text(int(state.step), 'samples', '\n\n'.join(f'    {line}' for line in lines))
  print('\n'.join([header] + [f'  {line}' for line in lines]))


# --- Modes ----------------------------------------------------------------------------------


def _meta(config, vocab: Vocabulary) -> dict:
  model = {k: v for k, v in config.model.to_dict().items() if k != 'unroll'}  # unroll: speed only.
  return {'experiment': 'textgen', 'objective': config.objective, 'model': model,
          'window': config.data.window, 'vocab_sha256': vocab.digest(),
          'split': {'val_fraction': config.data.val_fraction, 'seed': config.data.split_seed,
                    'limit_messages': config.data.limit_messages},
          'max_windows': config.data.max_windows}


load_data = load_corpus  # The benchmark's name for it.


def build_task(config: ml_collections.ConfigDict, corpus: CharCorpus) -> train_loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  model = make_model(config, corpus.vocab.size)
  starts = train_starts(config, corpus)
  return train_loop.TrainTask(
      state=create_state(config, corpus.vocab.size),
      train_step=functools.partial(train_step, model=model, tx=make_tx(config),
                                   window=config.data.window,
                                   learning_rate=config.optim.learning_rate),
      data={'text': corpus.train_ids, 'starts': starts}, num_examples=len(starts),
      end_epoch=functools.partial(end_epoch, update_plateau=make_plateau_update(config)))


def train(config, workdir: Path, options=None) -> dict:
  """Trains (resuming if possible); writes results.json for the best checkpoint."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    corpus = load_corpus(config)
    save_vocabulary(workdir, corpus.vocab)
    model = make_model(config, corpus.vocab.size)
    validate = make_validate(config, model, corpus.val_ids, config.eval.stride)
    sampler = CharSampler(model, config.data.window)
    task = dataclasses.replace(
        build_task(config, corpus),
        evaluate=lambda state: _validate_and_print(validate, state),
        report_epoch=functools.partial(_report_epoch, config, workdir, sampler, corpus.vocab),
        meta=_meta(config, corpus.vocab))
    starts = task.data['starts']
    start = time.time()
    state = train_loop.train_in_workdir(task, config, workdir, BEST_METRIC, 'min')
    steps_per_epoch = len(starts) // config.batch_size
    plots.plot_curves(workdir, ['train_loss', 'val_bpc', 'train_lr'])
    params, best_step = restore_best(config, workdir, corpus.vocab)
    extra = {'wall_s': round(time.time() - start, 1), 'epochs': int(state.step) // steps_per_epoch,
             'best_epoch': best_step // steps_per_epoch, 'steps_per_epoch': steps_per_epoch,
             'train_windows': len(starts), 'train_loss': _logged(workdir, best_step, 'train_loss')}
    return _write_results(config, workdir, params, corpus.val_ids, extra)


def _validate_and_print(validate, state: TrainState) -> dict[str, float]:
  metrics = validate(state.params)
  print(f'validation: loss {metrics["val_loss"]:.4f} nats, {metrics["val_bpc"]:.4f} bits/char; '
        f'next epoch lr scale {float(state.schedule.scale):.4g}')
  return metrics


def _logged(workdir: Path, step: int, name: str) -> float | None:
  """The value of `name` logged at `step` in metrics.jsonl (the latest such line)."""
  value = None
  for line in (workdir / 'metrics.jsonl').read_text(encoding='utf-8').splitlines():
    record = json.loads(line)
    if record.get('step') == step and name in record:
      value = record[name]
  return value


def restore_best(config, workdir: Path, vocab: Vocabulary, meta_keys=None) -> tuple[dict, int]:
  """(params, step) of the checkpoint with the lowest validation loss (else the latest)."""
  ckpt = Checkpointer(workdir / 'checkpoints', best_metric=BEST_METRIC, best_mode='min')
  try:
    step = ckpt.best_step() or ckpt.latest_step()
    if step is None:
      name = 'textgen_rnn' if config.model.cell == 'simple' else 'textgen_lstm'
      raise UserError(f'no checkpoint in {workdir}; train first: python launch.py '
                      f'--config=configs/{name}.py --workdir={workdir}')
    saved, current = ckpt.read_meta(step), _meta(config, vocab)
    keys = meta_keys or sorted(set(saved) | set(current))
    check_compatible({k: saved.get(k) for k in keys}, {k: current.get(k) for k in keys}, workdir)
    abstract = abstract_like(jax.eval_shape(lambda: create_state(config, vocab.size)))
    return ckpt.restore(step, {'state': abstract})['state'].params, step
  finally:
    ckpt.close()


def _write_results(config, workdir: Path, params, val_ids: np.ndarray, extra: dict) -> dict:
  model = make_model(config, int(params['dense']['bias'].shape[0]))
  results = {**extra, **make_validate(config, model, val_ids)(params),
             'objective': config.objective, 'cell': config.model.cell,
             'num_params': param_summary.count_params(params)}
  write_json(workdir / 'results.json', results)
  print(f'textgen {config.model.cell} ({config.objective}): validation {results["val_bpc"]:.4f} '
        f'bits/char, loss {results["val_loss"]:.4f} nats; {results["num_params"]:,} params')
  return results


def evaluate(config, workdir: Path, options=None) -> dict:
  """Validation loss and bits/char of the best checkpoint, merged into results.json."""
  corpus = load_corpus(config)
  vocab = Vocabulary.load(workdir / char_corpus.VOCAB_FILE)
  if vocab != corpus.vocab:
    raise UserError(f'the vocabulary in {workdir} differs from this data\'s; evaluate with the '
                    f'data (and config.data.limit_messages) the model was trained on.')
  params, _ = restore_best(config, workdir, vocab)
  path = workdir / 'results.json'
  previous = json.loads(path.read_text()) if path.exists() else {}
  with WorkdirLock(workdir):
    return _write_results(config, workdir, params, corpus.val_ids, previous)


def sample(config, workdir: Path, options) -> str:
  """Prints `options.prompt` and its continuation from the best checkpoint; returns the text."""
  if options.length < 0:
    raise UserError(f'--length={options.length} must be >= 0.')
  if options.temperature < 0:
    raise UserError(f'--temperature={options.temperature} must be >= 0 (0 = greedy).')
  vocab = Vocabulary.load(workdir / char_corpus.VOCAB_FILE)
  params, _ = restore_best(config, workdir, vocab, meta_keys=_SAMPLING_META)
  _, _, dropped = prompt_context(vocab, options.prompt)
  if dropped:
    print(f'note: dropped characters not in the vocabulary from the prompt: {dropped!r}',
          file=sys.stderr)
  sampler = CharSampler(make_model(config, vocab.size), config.data.window)
  kept, text = generate_text(sampler, params, vocab, options.prompt, options.length,
                             options.temperature, options.seed, options.stop_at_end)
  print(kept + text)
  return kept + text


def summary(config, workdir: Path, options=None) -> None:
  vocab = load_corpus(config).vocab
  params = jax.eval_shape(lambda: create_state(config, vocab.size)).params
  title = f'CharModel ({config.model.cell}, vocab {vocab.size}, objective {config.objective})'
  print(param_summary.param_table(params, title))


MODES = {'train': train, 'eval': evaluate, 'summary': summary, 'sample': sample}
