"""Experiment 1: the SMS spam classifier, Embedding -> SimpleRNN or LSTM -> dense -> one logit.

The pipeline: load the UCI SMS Spam Collection; drop exact duplicates (`config.data.dedup`); split
80/20 stratified with `config.data.split_seed`; fit the Keras-style tokenizer on the training split
(or on every message with `config.data.tokenizer_fit='all'`, as the study did); encode to
`config.data.maxlen` ids, pre-padded; train with Adam on binary cross-entropy of logits; evaluate on
the held-out split after every epoch and at the end.

The held-out split is the test set. The per-epoch `val_*` metrics are that same split, monitored as
the study's Keras `validation_data`; nothing is chosen on it (no early stopping, no best
checkpoint): the results are those of the last epoch.

`config.num_seeds = N` trains seeds `config.seed + k`, k < N, each in `<workdir>/seed_<seed>/` with
its own checkpoints, `tokenizer.json`, metrics and `results.json`, then writes the mean and std over
seeds to `<workdir>/results.json`. With `config.data.split_per_seed` seed k also splits with
`split_seed + k`, so the spread includes the luck of the split, not only of the initialisation.
"""

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import binary_metrics, config_base, param_summary, plots, sms_data, train_loop
from aml2_jax.checkpointing import Checkpointer, abstract_like, check_compatible
from aml2_jax.errors import UserError
from aml2_jax.evaluation import map_in_batches
from aml2_jax.metrics_logging import MetricLogger, write_json
from aml2_jax.spam_models import SpamClassifier, spam_probability
from aml2_jax.tokenizer import Tokenizer
from aml2_jax.train_state import TrainState, apply_gradients, create_train_state, step_key
from aml2_jax.workdir import WorkdirLock, write_config

TOKENIZER_FILE = 'tokenizer.json'
THRESHOLD = 0.5  # P(spam) above which a message is labelled spam.
_EVAL_BATCH = 256  # Messages per jitted inference call (one compiled shape).
_CONFIG_FILES = {'simple': 'configs/spam_rnn.py', 'lstm': 'configs/spam_lstm.py'}


def check_config(config: ml_collections.ConfigDict) -> None:
  config_base.check_base(config)
  config_base.check_positive(config, 'num_seeds', 'optim.learning_rate', 'model.embed_dim',
                             'model.units', 'model.unroll', 'data.maxlen')
  config_base.check_fraction(config, 'model.dropout')
  config_base.check_fraction(config, 'data.test_fraction', allow_zero=False)
  if config.model.cell not in _CONFIG_FILES:
    raise UserError(f'config.model.cell is {config.model.cell!r}: use "simple" or "lstm".')
  if any(width <= 0 for width in config.model.hidden):
    raise UserError(f'config.model.hidden is {tuple(config.model.hidden)}: widths must be > 0.')
  if config.data.num_words < 2:
    raise UserError(f'config.data.num_words is {config.data.num_words}: it must be >= 2 '
                    '(id 0 is padding, so num_words - 1 words are kept).')
  if config.data.tokenizer_fit not in ('train', 'all'):
    raise UserError(f'config.data.tokenizer_fit is {config.data.tokenizer_fit!r}: use "train" '
                    '(no test leakage) or "all" (as the study did).')
  if config.data.limit < 0:
    raise UserError('config.data.limit must be >= 0 (0 = every message).')


# ---------------------------------------------------------------- data


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


def load_corpus(config: ml_collections.ConfigDict) -> sms_data.SmsSpam:
  """The messages a run uses: the first `data.limit` rows (0 = all), deduplicated if asked."""
  corpus = sms_data.load_sms_spam(config.data.dir)
  if config.data.limit:
    corpus = sms_data.SmsSpam(corpus.texts[:config.data.limit], corpus.labels[:config.data.limit],
                              corpus.path)
  return sms_data.drop_duplicates(corpus) if config.data.dedup else corpus


def split_indices(corpus: sms_data.SmsSpam,
                  config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """(train_idx, test_idx) into `corpus`: stratified, seeded by `config.data.split_seed`."""
  train_idx, test_idx = sms_data.stratified_split(corpus.labels, config.data.test_fraction,
                                                  config.data.split_seed)
  if len(test_idx) == 0 or len(np.unique(corpus.labels[train_idx])) < 2:
    raise UserError(f'{corpus.path} gives {len(train_idx)} training and {len(test_idx)} test '
                    'messages; both need messages and training needs both classes.')
  return train_idx, test_idx


def prepare_split(corpus: sms_data.SmsSpam, config: ml_collections.ConfigDict) -> SpamSplit:
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


# ---------------------------------------------------------------- model and training


def build_model(config: ml_collections.ConfigDict) -> SpamClassifier:
  m = config.model
  return SpamClassifier(cell=m.cell, vocab_size=config.data.num_words, embed_dim=m.embed_dim,
                        units=m.units, hidden=tuple(m.hidden), dropout=m.dropout, unroll=m.unroll)


def make_tx(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(config.optim.learning_rate, eps=config.optim.eps)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params(model: SpamClassifier, key: jax.Array, maxlen: int) -> dict:
  # Jitted and cached per (model, maxlen): eager init runs the scan op by op, several times slower.
  return model.init(key, jnp.zeros((1, maxlen), jnp.int32))['params']


def create_state(config: ml_collections.ConfigDict) -> TrainState:
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  params = _init_params(build_model(config), init_key, config.data.maxlen)
  return create_train_state(params, make_tx(config), run_key)


def train_step(state: TrainState, data: dict, batch_idx: jax.Array, *, model: SpamClassifier,
               tx: optax.GradientTransformation) -> tuple[TrainState, dict]:
  """One Adam step on the mean binary cross-entropy of logits.

  Args:
    state: the train state.
    data: 'ids' int32 [num, maxlen] and 'labels' int32 [num], gathered with `batch_idx`.
    batch_idx: int32 [batch].
    model: the classifier; tx: the optimizer (bound with functools.partial).
  """
  ids, labels = data['ids'][batch_idx], data['labels'][batch_idx].astype(jnp.float32)

  def loss_fn(params):
    logits = model.apply({'params': params}, ids, train=True, rngs={'dropout': step_key(state)})
    loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    return loss, jnp.mean((logits > 0) == (labels > 0.5))

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = {'loss': loss, 'accuracy': accuracy, 'grad_norm': optax.global_norm(grads)}
  return apply_gradients(state, grads, tx), metrics


def load_data(config: ml_collections.ConfigDict) -> SpamSplit:
  """The encoded train/test split of one run (corpus, dedup, split, tokenizer)."""
  return prepare_split(load_corpus(config), config)


def build_task(config: ml_collections.ConfigDict, split: SpamSplit) -> train_loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  return train_loop.TrainTask(
      state=create_state(config),
      train_step=functools.partial(train_step, model=build_model(config), tx=make_tx(config)),
      data={'ids': split.train_ids, 'labels': split.train_labels},
      num_examples=len(split.train_labels))


def make_logits_fn(model: SpamClassifier):
  """A jitted `(params, ids [batch, maxlen]) -> logits [batch]`, compiled once per batch shape."""
  return jax.jit(lambda params, ids: model.apply({'params': params}, ids))


def predict_logits(logits_fn, params, ids: np.ndarray) -> np.ndarray:
  """Logits [num] of encoded messages [num, maxlen], in fixed-size batches."""
  return map_in_batches(functools.partial(logits_fn, params), ids, batch_size=_EVAL_BATCH)[0]


def evaluate_split(logits_fn, params, ids: np.ndarray, labels: np.ndarray) -> dict:
  """'loss' and every `binary_metrics` entry of the model on one split."""
  logits = predict_logits(logits_fn, params, ids)
  # Logit 0 is P(spam) = 0.5; logits also keep the AUCs free of float32 ties at P = 1.
  threshold = float(np.log(THRESHOLD / (1 - THRESHOLD)))
  return {'loss': binary_metrics.bce_from_logits(labels, logits),
          **binary_metrics.binary_metrics(labels, logits, threshold=threshold)}


# ---------------------------------------------------------------- runs, seeds and results


def run_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """One config per seed: seed `config.seed + k` (and split seed + k with `split_per_seed`)."""
  runs = []
  for k in range(config.num_seeds):
    run = config.copy_and_resolve_references()
    run.seed = config.seed + k
    run.num_seeds = 1
    if config.data.split_per_seed:
      run.data.split_seed = config.data.split_seed + k
    runs.append(run)
  return runs


def seed_dir(workdir: Path, seed: int) -> Path:
  return Path(workdir) / f'seed_{seed}'


def _model_meta(config, digest: str) -> dict:
  """What a restore for inference must match: the architecture and the vocabulary."""
  model = {k: v for k, v in config.model.to_dict().items() if k != 'unroll'}  # Speed knob only.
  return {'experiment': 'spam', 'model': model, 'num_words': config.data.num_words,
          'maxlen': config.data.maxlen, 'vocab_sha256': digest}


def _train_meta(config, digest: str) -> dict:
  """What resuming must also match: the data the run trains on (the vocab alone can coincide)."""
  d = config.data
  data = {'dedup': d.dedup, 'limit': d.limit, 'test_fraction': d.test_fraction,
          'split_seed': d.split_seed, 'tokenizer_fit': d.tokenizer_fit}
  return {**_model_meta(config, digest), 'data': data}


def train_run(config: ml_collections.ConfigDict, run_dir: Path, corpus: sms_data.SmsSpam) -> dict:
  """Trains (or resumes) one seed in `run_dir`, then writes its `results.json`."""
  run_dir.mkdir(parents=True, exist_ok=True)
  with WorkdirLock(run_dir):
    write_config(run_dir, config)
    split = prepare_split(corpus, config)
    _print_data(config, corpus, split)
    meta = _train_meta(config, vocab_digest(split.tokenizer))
    logits_fn = make_logits_fn(build_model(config))
    task = dataclasses.replace(build_task(config, split), meta=meta,
                               evaluate=functools.partial(_epoch_metrics, logits_fn, split, config))
    ckpt = Checkpointer(run_dir / 'checkpoints', config.keep_checkpoints)
    logger = MetricLogger(run_dir)
    try:
      resumed_from = ckpt.latest_step()
      if resumed_from is not None:  # Refuse before replacing the vocabulary that run needs.
        check_compatible(ckpt.read_meta(resumed_from), meta, run_dir)
      split.tokenizer.save(run_dir / TOKENIZER_FILE)
      start = time.perf_counter()
      state = train_loop.train(task, config, ckpt, logger)
      wall_s = time.perf_counter() - start
    finally:
      logger.close()
      ckpt.close()
    plots.plot_curves(run_dir, ['train_loss', 'val_loss', 'val_accuracy', 'val_f1'])
    extra = {'train_wall_s': round(wall_s, 1), 'resumed_from_step': resumed_from or 0}
    return _write_run_results(config, run_dir, state.params, split, logits_fn, extra)


def _epoch_metrics(logits_fn, split: SpamSplit, config, state: TrainState) -> dict:
  """The held-out metrics logged after every epoch (scalars only), with a one-line print."""
  metrics = evaluate_split(logits_fn, state.params, split.test_ids, split.test_labels)
  metrics.pop('confusion_matrix')
  epoch = int(state.step) // (len(split.train_labels) // config.batch_size)
  print(f'seed {config.seed} epoch {epoch}: val loss {metrics["loss"]:.4f}  '
        f'acc {metrics["accuracy"]:.4f}  precision {metrics["precision"]:.4f}  '
        f'recall {metrics["recall"]:.4f}  f1 {metrics["f1"]:.4f}', flush=True)
  return {f'val_{k}': v for k, v in metrics.items()}


def _print_data(config, corpus: sms_data.SmsSpam, split: SpamSplit) -> None:
  fit = 'training split' if config.data.tokenizer_fit == 'train' else 'all messages'
  kept = 'deduplicated' if config.data.dedup else 'duplicates kept'
  print(f'seed {config.seed}: {len(corpus)} messages ({kept}), '
        f'split seed {config.data.split_seed}: {len(split.train_labels)} train '
        f'({int(split.train_labels.sum())} spam) / {len(split.test_labels)} test '
        f'({int(split.test_labels.sum())} spam); {len(split.tokenizer.word_index)} words seen in '
        f'the {fit}, ids below {split.tokenizer.num_words} kept', flush=True)


def _write_run_results(config, run_dir: Path, params, split: SpamSplit, logits_fn,
                       extra: dict) -> dict:
  metrics = evaluate_split(logits_fn, params, split.test_ids, split.test_labels)
  results = {
      **{f'test_{k}': v for k, v in metrics.items()},
      'num_params': param_summary.count_params(params),
      'num_train': len(split.train_labels), 'num_test': len(split.test_labels),
      'seed': config.seed, 'split_seed': config.data.split_seed, 'dedup': config.data.dedup,
      'tokenizer_fit': config.data.tokenizer_fit, 'vocab_sha256': vocab_digest(split.tokenizer),
      **extra,
  }
  write_json(run_dir / 'results.json', results)
  return results


_AGGREGATED = tuple(f'test_{name}' for name in ('loss',) + binary_metrics.SCALAR_NAMES) + (
    'train_wall_s',)


def summarize(config, per_seed: dict[int, dict]) -> dict:
  """Mean and std (ddof=1; 0 for one seed) of each metric over seeds, plus every seed's results.

  The confusion matrix is summed over seeds (counts stay integers).
  """
  runs = list(per_seed.values())
  aggregate = {'num_seeds': len(runs), 'seeds': list(per_seed),
               'num_params': runs[0]['num_params'], 'model_cell': config.model.cell,
               'dedup': config.data.dedup, 'tokenizer_fit': config.data.tokenizer_fit,
               'split_seeds': [r['split_seed'] for r in runs]}
  for name in _AGGREGATED:
    values = np.array([r[name] for r in runs if name in r], np.float64)
    if len(values):
      aggregate[name] = float(values.mean())
      aggregate[f'{name}_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  aggregate['test_confusion_matrix'] = np.sum(
      [r['test_confusion_matrix'] for r in runs], axis=0).tolist()
  aggregate['per_seed'] = {str(seed): r for seed, r in per_seed.items()}
  return aggregate


def _write_summary(config, workdir: Path, per_seed: dict[int, dict]) -> dict:
  aggregate = summarize(config, per_seed)
  write_json(workdir / 'results.json', aggregate)
  print(format_table(aggregate))
  print(f'wrote {workdir / "results.json"}')
  return aggregate


def format_table(aggregate: dict) -> str:
  """The printed results of `summarize`: one row per metric, mean ± std, then each seed's value."""
  a = aggregate
  lines = [f'spam {a["model_cell"]}: {a["num_seeds"]} seed(s) {a["seeds"]}, dedup={a["dedup"]}, '
           f'tokenizer fit on {a["tokenizer_fit"]}, {a["num_params"]:,} params',
           f'{"metric":<18}{"mean ± std":>20}   per seed']
  for name in _AGGREGATED:
    if name in a:
      per_seed = ' '.join(f'{r[name]:.4f}' for r in a['per_seed'].values() if name in r)
      lines.append(f'{name:<18}{a[name]:>11.4f} ± {a[name + "_std"]:.4f}   {per_seed}')
  (tn, fp), (fn, tp) = a['test_confusion_matrix']
  lines.append(f'confusion matrix summed over seeds: ham->ham {tn}, ham->spam {fp}, '
               f'spam->ham {fn}, spam->spam {tp}')
  return '\n'.join(lines)


# ---------------------------------------------------------------- modes


def train(config, workdir: Path, options=None) -> dict:
  """Trains every seed (resuming where checkpoints exist), then writes the summary."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    corpus = load_corpus(config)
    per_seed = {run.seed: train_run(run, seed_dir(workdir, run.seed), corpus)
                for run in run_configs(config)}
    return _write_summary(config, workdir, per_seed)


def _open_checkpoints(config, run_dir: Path, workdir: Path) -> tuple[Checkpointer, int]:
  """The run's checkpointer and latest step; a UserError saying how to train if there is none."""
  if (run_dir / 'checkpoints').is_dir():  # Checkpointer would create the folder: look first.
    ckpt = Checkpointer(run_dir / 'checkpoints')
    if ckpt.latest_step() is not None:
      return ckpt, ckpt.latest_step()
    ckpt.close()
  others = sorted(p.parent.name for p in Path(workdir).glob('seed_*/checkpoints'))
  hint = f' (found {", ".join(others)}: pick one with --config.seed)' if others else ''
  raise UserError(f'no trained spam model in {run_dir}{hint}; train it first: python launch.py '
                  f'--config={_CONFIG_FILES[config.model.cell]} --workdir={workdir}')


def restore_run(config, run_dir: Path, workdir: Path) -> tuple[dict, Tokenizer, dict]:
  """(params, tokenizer, saved meta) of a trained run, refusing a vocabulary or model mismatch."""
  ckpt, step = _open_checkpoints(config, run_dir, workdir)
  try:
    saved = ckpt.read_meta(step)
    tokenizer = Tokenizer.load(run_dir / TOKENIZER_FILE)
    digest = vocab_digest(tokenizer)
    if saved.get('vocab_sha256') != digest:
      trained_with = str(saved.get('vocab_sha256'))[:12]
      raise UserError(f'{run_dir / TOKENIZER_FILE} is not the vocabulary the checkpoint was '
                      f'trained with (SHA-256 {digest[:12]}... vs {trained_with}...); retrain in '
                      f'{workdir} or restore that file.')
    check_compatible({k: saved.get(k) for k in _model_meta(config, digest)},
                     _model_meta(config, digest), run_dir)
    abstract = abstract_like(jax.eval_shape(lambda: create_state(config)))
    params = ckpt.restore(step, {'state': abstract})['state'].params
  finally:
    ckpt.close()
  return params, tokenizer, saved


def evaluate(config, workdir: Path, options=None) -> dict:
  """Re-evaluates every seed's last checkpoint on its held-out split; rewrites the results."""
  with WorkdirLock(workdir):
    corpus = load_corpus(config)
    per_seed = {}
    for run in run_configs(config):
      run_dir = seed_dir(workdir, run.seed)
      params, _, saved = restore_run(run, run_dir, workdir)
      split = prepare_split(corpus, run)
      check_compatible(saved, _train_meta(run, vocab_digest(split.tokenizer)), run_dir)
      extra = {k: v for k, v in _read_results(run_dir).items()
               if k in ('train_wall_s', 'resumed_from_step')}  # Facts of training, not of eval.
      per_seed[run.seed] = _write_run_results(run, run_dir, params, split,
                                              make_logits_fn(build_model(run)), extra)
    return _write_summary(config, workdir, per_seed)


def _read_results(run_dir: Path) -> dict:
  path = run_dir / 'results.json'
  return json.loads(path.read_text()) if path.exists() else {}


def read_messages(path: str) -> list[str]:
  """The messages of a UTF-8 file, one per line (empty lines are empty messages)."""
  try:
    raw = Path(path).read_bytes()
  except OSError as e:
    raise UserError(f'cannot read --input={path} ({e.strerror}); give a UTF-8 text file with '
                    'one message per line.') from None
  try:
    text = raw.decode('utf-8').removeprefix('\ufeff')
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    raise UserError(f'--input={path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); re-save '
                    'the file as UTF-8.') from None
  lines = text.split('\n')  # Not splitlines(): that also splits on \v, \f and U+2028.
  if lines[-1] == '':
    lines.pop()  # The final newline ends the last message; it does not start another.
  return [line.removesuffix('\r') for line in lines]


def _preview(text: str, width: int = 60) -> str:
  """One printable line of a message, cut to `width`, safe for the terminal's encoding."""
  flat = ' '.join(text.split())
  flat = flat if len(flat) <= width else flat[:width - 3] + '...'
  encoding = sys.stdout.encoding or 'utf-8'
  return flat.encode(encoding, 'backslashreplace').decode(encoding) if flat else '(empty message)'


def predict(config, workdir: Path, options) -> list[float]:
  """Prints P(spam), the label and how many known words the model saw; returns P(spam)."""
  messages = list(options.text) + (read_messages(options.input) if options.input else [])
  if not messages:
    raise UserError('nothing to classify: give --text="a message" (repeatable) or --input=FILE '
                    '(UTF-8, one message per line).')
  run = run_configs(config)[0]
  params, tokenizer, _ = restore_run(run, seed_dir(workdir, run.seed), workdir)
  ids = tokenizer.encode(messages, config.data.maxlen)
  logits = predict_logits(make_logits_fn(build_model(run)), params, ids)
  probs = np.asarray(spam_probability(logits), np.float64)
  # Known words the model saw (the last maxlen of them): 0 explains a bare prior answer.
  known = [min(len(seq), config.data.maxlen) for seq in tokenizer.texts_to_sequences(messages)]
  print(f'{"P(spam)":>8}  {"label":<5}  {"known words":>11}  message')
  for prob, count, message in zip(probs, known, messages):
    label = 'spam' if prob > THRESHOLD else 'ham'
    print(f'{prob:>8.4f}  {label:<5}  {count:>11}  {_preview(message)}')
  return probs.tolist()


def summary(config, workdir: Path, options=None) -> None:
  params = jax.eval_shape(lambda: create_state(config)).params
  print(param_summary.param_table(params, f'SpamClassifier (cell={config.model.cell})'))


MODES = {'train': train, 'eval': evaluate, 'summary': summary, 'predict': predict}
