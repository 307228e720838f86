"""Experiment: a conditional GAN on Fashion-MNIST, with its quality measured by a classifier.

One jitted step updates the discriminator on real and generated images (scored in one batch),
then the generator with the non-saturating loss against the updated discriminator. The
generator's forward pass is shared by both updates (its VJP is kept for the generator step).
"""

import functools
import shutil
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import config_base, config_files, fmnist_classifier, fmnist_data, gan_metrics
from aml2_jax import param_summary, plots, train_loop
from aml2_jax.checkpointing import restore_latest_state
from aml2_jax.errors import UserError
from aml2_jax.gan_models import IMAGE_PIXELS, NUM_CLASSES, Discriminator, Generator
from aml2_jax.image_grid import grid_image, save_labelled_grid
from aml2_jax.metrics_logging import MetricLogger, write_json
from aml2_jax.train_state import step_key
from aml2_jax.workdir import WorkdirLock, write_config


@flax.struct.dataclass
class GanState:
  """Both nets, both optimizer states, the generator's moving average, step and raw key data."""
  step: jax.Array
  g_params: Any
  g_ema: Any  # Exponential moving average of g_params (config.optim.g_ema_decay).
  d_params: Any
  g_opt: Any
  d_opt: Any
  key: jax.Array


def check_config(config: ml_collections.ConfigDict) -> None:
  config_base.check_base(config)
  config_base.check_positive(config, 'model.latent_dim', 'optim.learning_rate',
                             'eval.num_per_class', 'eval.cas_num_per_class')
  config_base.check_fraction(config, 'model.dropout')
  config_base.check_fraction(config, 'optim.g_ema_decay')
  if not 0 < config.optim.real_label <= 1:
    raise UserError(f'config.optim.real_label is {config.optim.real_label}: it must be in (0, 1].')
  if config.model.dtype not in ('float32', 'bfloat16'):
    raise UserError(f'config.model.dtype is {config.model.dtype!r}: use float32 or bfloat16.')


def build_models(config) -> tuple[Generator, Discriminator]:
  dtype = jnp.dtype(config.model.dtype)
  return (Generator(tuple(config.model.g_hidden), config.model.embed_dim, dtype),
          Discriminator(tuple(config.model.d_hidden), config.model.embed_dim, config.model.dropout,
                        dtype))


def make_tx(config) -> optax.GradientTransformation:
  return optax.adam(config.optim.learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def create_state(config) -> GanState:
  g, d = build_models(config)
  g_key, d_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
  labels = jnp.zeros((1,), jnp.int32)
  g_params = g.init(g_key, jnp.zeros((1, config.model.latent_dim)), labels)['params']
  d_params = d.init(d_key, jnp.zeros((1, IMAGE_PIXELS)), labels, train=False)['params']
  tx = make_tx(config)
  return GanState(step=jnp.zeros((), jnp.int32), g_params=g_params,
                  g_ema=jax.tree.map(jnp.copy, g_params),  # Own buffers: both are donated.
                  d_params=d_params, g_opt=tx.init(g_params), d_opt=tx.init(d_params),
                  key=jax.random.key_data(run_key))


def train_step(state: GanState, data: dict, batch_idx: jax.Array, *, g, d, tx, latent_dim: int,
               real_label: float, ema_decay: float) -> tuple[GanState, dict]:
  """One discriminator update, then one generator update; `data` holds uint8 images [n, 784]."""
  images = data['images'][batch_idx].astype(jnp.float32) / 127.5 - 1.0
  labels = data['labels'][batch_idx]
  noise_key, label_key, d_drop, g_drop = jax.random.split(step_key(state), 4)
  noise = jax.random.normal(noise_key, (len(batch_idx), latent_dim))
  fake_labels = jax.random.randint(label_key, (len(batch_idx),), 0, NUM_CLASSES)
  fake, g_vjp = jax.vjp(lambda p: g.apply({'params': p}, noise, fake_labels), state.g_params)

  def d_loss_fn(d_params):
    logits = d.apply({'params': d_params}, jnp.concatenate([images, fake]),
                     jnp.concatenate([labels, fake_labels]), train=True, rngs={'dropout': d_drop})
    targets = jnp.concatenate([jnp.full_like(labels, real_label, jnp.float32),
                               jnp.zeros_like(fake_labels, jnp.float32)])
    return optax.sigmoid_binary_cross_entropy(logits, targets).mean(), jnp.split(logits, 2)

  (d_loss, (real_logits, fake_logits)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.d_params)
  d_updates, d_opt = tx.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake_images):  # Non-saturating: -log D(G(z)), against the updated D.
    logits = d.apply({'params': d_params}, fake_images, fake_labels, train=True,
                     rngs={'dropout': g_drop})
    return optax.sigmoid_binary_cross_entropy(logits, jnp.ones_like(logits)).mean()

  g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_updates, g_opt = tx.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  g_ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state.g_ema, g_params)
  state = state.replace(step=state.step + 1, g_params=g_params, g_ema=g_ema, d_params=d_params,
                        g_opt=g_opt, d_opt=d_opt)
  return state, {'d_loss': d_loss, 'g_loss': g_loss,
                 'd_real': jax.nn.sigmoid(real_logits).mean(),
                 'd_fake': jax.nn.sigmoid(fake_logits).mean()}


def make_generate(config, g_params):
  """(labels [n], seed) -> uint8 images [n, 28, 28], drawn in batches of 1,000."""
  g, _ = build_models(config)

  @jax.jit
  def generate_batch(labels, key):
    noise = jax.random.normal(key, (len(labels), config.model.latent_dim))
    images = g.apply({'params': g_params}, noise, labels)
    return jnp.round((images + 1.0) * 127.5).clip(0, 255).astype(jnp.uint8).reshape(-1, 28, 28)

  def generate(labels: np.ndarray, seed: int) -> np.ndarray:
    key = jax.random.key(seed)
    out = []
    for i, start in enumerate(range(0, len(labels), 1000)):
      batch = np.asarray(labels[start:start + 1000], np.int32)
      padded = np.pad(batch, (0, 1000 - len(batch)))  # One shape: compile once.
      out.append(np.asarray(generate_batch(padded, jax.random.fold_in(key, i)))[:len(batch)])
    return np.concatenate(out)

  return generate


def class_grid_labels(classes, num_per_class: int) -> np.ndarray:
  return np.repeat(np.asarray(classes, np.int32), num_per_class)


def _meta(config) -> dict:
  return {'experiment': 'cgan', 'model': config.model.to_dict()}


def load_data(config) -> fmnist_data.FashionMnist:
  data = fmnist_data.load_fashion_mnist(config.data.dir)
  if config.data.limit:
    data = fmnist_data.FashionMnist(data.train_images[:config.data.limit],
                                    data.train_labels[:config.data.limit],
                                    data.test_images, data.test_labels)
  return data


# XLA:CPU's default copy insertion copies every donated buffer that the step both reads and
# updates in place (params, Adam moments: 5.9M floats a step, ~1.2 ms of ~17); its region
# analysis proves the copies unneeded. (The recurrent models measured 3-5% slower with it.)
# Only XLA:CPU reads this option.
_COMPILER_OPTIONS = {'xla_cpu_copy_insertion_use_region_analysis': True}


def build_task(config, data: fmnist_data.FashionMnist, workdir: Path | None = None):
  """The training task for the shared loop (also what the benchmark times)."""
  g, d = build_models(config)
  step = functools.partial(train_step, g=g, d=d, tx=make_tx(config),
                           latent_dim=config.model.latent_dim, real_label=config.optim.real_label,
                           ema_decay=config.optim.g_ema_decay)
  report = functools.partial(_report_epoch, config, workdir) if workdir else None
  return train_loop.TrainTask(
      state=create_state(config), train_step=step,
      data={'images': data.train_images.reshape(-1, IMAGE_PIXELS),
            'labels': data.train_labels.astype(np.int32)},
      num_examples=len(data.train_labels), meta=_meta(config),
      compiler_options=_COMPILER_OPTIONS, **({'report_epoch': report} if report else {}))


def train(config, workdir: Path, options=None) -> dict:
  """Trains (resuming if possible), then measures the generator's quality into results.json."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    data = load_data(config)
    task = build_task(config, data, workdir)
    start = time.time()
    state = train_loop.train_in_workdir(task, config, workdir)
    train_seconds = time.time() - start
    plots.plot_curves(workdir, ['train_d_loss', 'train_g_loss', 'train_d_real', 'train_d_fake'])
    print(f'trained in {train_seconds:.0f} s; samples in {workdir / "samples"}')
    if not config.eval.after_training:
      return {}
    return _evaluate_and_write(config, workdir, _generator_params(config, state), data,
                               {'train_wall_s': round(train_seconds, 1)})


def _report_epoch(config, workdir: Path, state: GanState, epoch: int, logger: MetricLogger) -> None:
  """The fixed-noise grid (a row per class) as PNG and in TensorBoard."""
  generate = make_generate(config, _generator_params(config, state))
  images = generate(class_grid_labels(range(NUM_CLASSES), 10), seed=config.seed)
  images = images.reshape(NUM_CLASSES, 10, 28, 28)
  save_labelled_grid(images, fmnist_data.CLASS_NAMES, workdir / 'samples' / f'epoch_{epoch + 1:03d}.png')
  logger.image(int(state.step), 'samples', grid_image(images))


def _generator_params(config, state: GanState):
  """The generator used for samples and evaluation: the moving average unless told otherwise."""
  return state.g_ema if config.eval.use_ema else state.g_params


def restore_generator(config, workdir: Path):
  """The latest checkpoint's generator params (after checking it fits this config)."""
  state = restore_latest_state(workdir, _meta(config), lambda: create_state(config),
                               'python launch.py --config=configs/cgan.py')
  return _generator_params(config, state)


def evaluate(config, workdir: Path, options=None) -> dict:
  g_params = restore_generator(config, workdir)
  with WorkdirLock(workdir):
    return _evaluate_and_write(config, workdir, g_params, load_data(config), {})


def _classifier(config, workdir: Path):
  """The judge: restored from its workdir, or trained there first if it has no checkpoint."""
  clf_config = config_files.load_config('fmnist_classifier', config.eval.classifier_variant)
  clf_config.data.dir = config.data.dir
  clf_dir = Path(config.eval.classifier_workdir or workdir.parent / 'fmnist_classifier').absolute()
  if not (clf_dir / 'results.json').exists():  # Written when its training completes.
    print(f'training the judging classifier in {clf_dir} (once; reused afterwards)')
    clf_dir.mkdir(parents=True, exist_ok=True)
    fmnist_classifier.train(clf_config, clf_dir)
  params = fmnist_classifier.restore_params(clf_config, clf_dir)
  return clf_config, fmnist_classifier.make_predict(fmnist_classifier.build_model(clf_config), params)


def _evaluate_and_write(config, workdir: Path, g_params, data, extra: dict) -> dict:
  """Conditional accuracy, classifier-space FID, class coverage and CAS into results.json."""
  clf_config, predict = _classifier(config, workdir)
  generate = make_generate(config, g_params)
  labels = class_grid_labels(range(NUM_CLASSES), config.eval.num_per_class)
  results = {
      **extra,
      **quality_metrics(predict, generate(labels, seed=config.seed + 1), labels, data, config.seed),
      'cas_accuracy': _cas_accuracy(config, clf_config, workdir, generate, data),
      'num_params_generator': param_summary.count_params(g_params),
      'fid_note': "FID in the project's Fashion-MNIST classifier feature space, not Inception.",
  }
  write_json(workdir / 'results.json', results)
  _print_results(results)
  return results


def quality_metrics(predict, images: np.ndarray, labels: np.ndarray, data, seed: int) -> dict:
  """How the judge sees `images` [n, 28, 28] uint8 made for `labels` [n], against real data."""
  logits, features = predict(images)
  test_logits, test_features = predict(data.test_images)
  subset = np.random.default_rng(seed).permutation(len(data.train_images))[:len(data.test_images)]
  _, train_features = predict(data.train_images[subset])
  predicted = logits.argmax(-1)
  per_class = gan_metrics.per_class_accuracy(predicted, labels)
  return {
      'conditional_accuracy': gan_metrics.conditional_accuracy(predicted, labels),
      'classifier_test_accuracy': gan_metrics.conditional_accuracy(test_logits.argmax(-1),
                                                                   data.test_labels),
      'fid': gan_metrics.frechet_distance(features, test_features),
      'fid_train_vs_test': gan_metrics.frechet_distance(train_features, test_features),
      'class_entropy': gan_metrics.class_entropy(predicted),
      'per_class_accuracy': dict(zip(fmnist_data.CLASS_NAMES, per_class.round(4).tolist())),
  }


def _cas_accuracy(config, clf_config, workdir: Path, generate, data) -> float:
  """Classification accuracy score: the judge's architecture trained only on generated images."""
  labels = class_grid_labels(range(NUM_CLASSES), config.eval.cas_num_per_class)
  images = generate(labels, seed=config.seed + 2)
  cas_dir = workdir / 'cas_classifier'
  shutil.rmtree(cas_dir, ignore_errors=True)  # Its checkpoints belong to an older generator.
  cas_dir.mkdir()
  meta = {'experiment': 'cas_classifier', 'model': clf_config.model.to_dict()}
  state = fmnist_classifier.train_classifier(clf_config, cas_dir, images, labels,
                                             data.test_images, data.test_labels, meta)
  logits, _ = fmnist_classifier.make_predict(fmnist_classifier.build_model(clf_config),
                                             state.params)(data.test_images)
  return float(np.mean(logits.argmax(-1) == data.test_labels))


def _print_results(results: dict) -> None:
  for key in ('conditional_accuracy', 'classifier_test_accuracy', 'fid', 'fid_train_vs_test',
              'class_entropy', 'cas_accuracy'):
    print(f'{key:>26}: {results[key]:.4f}')
  print(f'{"class":>26}  conditional accuracy')
  for name, accuracy in results['per_class_accuracy'].items():
    print(f'{name:>26}  {accuracy:.3f}')


def sample(config, workdir: Path, options) -> None:
  """Writes a labelled PNG grid and an .npz (`images` uint8 [n, 28, 28], `labels`)."""
  classes = options.labels or tuple(range(NUM_CLASSES))
  unknown = [c for c in classes if not 0 <= c < NUM_CLASSES]
  if unknown:
    raise UserError(f'--labels has unknown classes {unknown}; Fashion-MNIST labels are 0-9 '
                    f'({", ".join(f"{i} {n}" for i, n in enumerate(fmnist_data.CLASS_NAMES))}).')
  if options.num_per_class <= 0:
    raise UserError(f'--num_per_class={options.num_per_class} must be > 0.')
  generate = make_generate(config, restore_generator(config, workdir))
  labels = class_grid_labels(classes, options.num_per_class)
  images = generate(labels, seed=options.seed)
  out = Path(options.out or workdir / 'samples' / 'sample.png')
  save_labelled_grid(images.reshape(len(classes), options.num_per_class, 28, 28),
                     [fmnist_data.CLASS_NAMES[c] for c in classes], out)
  np.savez_compressed(out.with_suffix('.npz'), images=images, labels=labels)
  print(f'wrote {out} and {out.with_suffix(".npz")} ({len(labels)} images)')


def summary(config, workdir: Path, options=None) -> None:
  state = jax.eval_shape(lambda: create_state(config))
  print(param_summary.param_table(state.g_params, 'Generator'))
  print()
  print(param_summary.param_table(state.d_params, 'Discriminator'))


MODES = {'train': train, 'eval': evaluate, 'sample': sample, 'summary': summary}
