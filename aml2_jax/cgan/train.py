"""The conditional GAN's training: its state, the jitted step, the task, and restoring a generator.

One jitted step updates the discriminator on real and generated images (scored in one batch),
then the generator with the non-saturating loss against the updated discriminator. The
generator's forward pass is shared by both updates (its VJP is kept for the generator step).
"""

import functools
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax.cgan import generate
from aml2_jax.cgan.models import IMAGE_PIXELS, NUM_CLASSES, make_model
from aml2_jax.datasets import fashion_mnist
from aml2_jax.layers import fast_ops
from aml2_jax.plotting.image_grid import grid_image, save_labelled_grid
from aml2_jax.training import loop, restore
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.train_state import step_key

TRAIN_COMMAND = 'python launch.py --config=configs/cgan.py'


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


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.adam(config.optim.learning_rate, b1=config.optim.b1, b2=config.optim.b2)


def create_train_state(config: ml_collections.ConfigDict) -> GanState:
  g, d = make_model(config)
  g_key, d_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
  labels = jnp.zeros((1,), jnp.int32)
  g_params = g.init(g_key, jnp.zeros((1, config.model.latent_dim)), labels)['params']
  d_params = d.init(d_key, jnp.zeros((1, IMAGE_PIXELS)), labels, train=False)['params']
  tx = make_optimizer(config)
  return GanState(step=jnp.zeros((), jnp.int32), g_params=g_params,
                  g_ema=jax.tree.map(jnp.copy, g_params),  # Own buffers: both are donated.
                  d_params=d_params, g_opt=tx.init(g_params), d_opt=tx.init(d_params),
                  key=jax.random.key_data(run_key))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       real_label: float) -> jax.Array:
  """D's mean sigmoid cross-entropy over real images (target `real_label`) and generated (0).

  Args:
    real_logits: [batch] D's logits of real images.
    fake_logits: [batch] D's logits of generated images.
    real_label: the real images' target: 1, or e.g. 0.9 for one-sided label smoothing.
  """
  logits = jnp.concatenate([real_logits, fake_logits])
  targets = jnp.concatenate([jnp.full_like(real_logits, real_label, jnp.float32),
                             jnp.zeros_like(fake_logits, jnp.float32)])
  return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """G's non-saturating loss, mean -log D(G(z)) over D's logits [batch] of generated images.

  Not the saturating log(1 - D(G(z))) of the minimax game: that one's gradient vanishes when D
  rejects the samples confidently, early in training.
  """
  return optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)).mean()


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """The moving average after one step: decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)


def train_step(state: GanState, data: dict, batch_idx: jax.Array, *, g, d, tx, latent_dim: int,
               real_label: float, ema_decay: float) -> tuple[GanState, dict]:
  """One discriminator update, then one generator update.

  Args:
    state: both nets' params and optimizer states.
    data: uint8 'images' [num, 784] and int32 'labels' [num], gathered with `batch_idx`.
    batch_idx: int32 [batch].
    g, d, tx, latent_dim, real_label, ema_decay: bound with functools.partial.
  """
  images = data['images'][batch_idx].astype(jnp.float32) / 127.5 - 1.0
  labels = data['labels'][batch_idx]
  noise_key, label_key, d_drop, g_drop = jax.random.split(step_key(state), 4)
  noise = jax.random.normal(noise_key, (len(batch_idx), latent_dim))
  fake_labels = jax.random.randint(label_key, (len(batch_idx),), 0, NUM_CLASSES)
  fake, g_vjp = jax.vjp(lambda p: g.apply({'params': p}, noise, fake_labels), state.g_params)

  def d_loss_fn(d_params):  # Real and generated images scored in one batch.
    logits = d.apply({'params': d_params}, jnp.concatenate([images, fake]),
                     jnp.concatenate([labels, fake_labels]), train=True, rngs={'dropout': d_drop})
    real_logits, fake_logits = jnp.split(logits, 2)
    return discriminator_loss(real_logits, fake_logits, real_label), (real_logits, fake_logits)

  (d_loss, (real_logits, fake_logits)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.d_params)
  d_updates, d_opt = tx.update(d_grads, state.d_opt, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake_images):  # Against the updated D.
    return generator_loss(d.apply({'params': d_params}, fake_images, fake_labels, train=True,
                                  rngs={'dropout': g_drop}))

  g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_updates, g_opt = tx.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  g_ema = ema_update(state.g_ema, g_params, ema_decay)
  state = state.replace(step=state.step + 1, g_params=g_params, g_ema=g_ema, d_params=d_params,
                        g_opt=g_opt, d_opt=d_opt)
  return state, {'d_loss': d_loss, 'g_loss': g_loss,
                 'd_real': jax.nn.sigmoid(real_logits).mean(),
                 'd_fake': jax.nn.sigmoid(fake_logits).mean()}


def model_meta(config: ml_collections.ConfigDict) -> dict:
  """What a checkpoint must match: the model (not its speed options)."""
  return {'experiment': 'cgan',
          'model': {k: v for k, v in config.model.to_dict().items() if k != 'ops'}}


def build_task(config: ml_collections.ConfigDict,
               data: fashion_mnist.FashionMnist) -> loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  g, d = make_model(config)
  step = functools.partial(train_step, g=g, d=d, tx=make_optimizer(config),
                           latent_dim=config.model.latent_dim, real_label=config.optim.real_label,
                           ema_decay=config.optim.g_ema_decay)
  return loop.TrainTask(
      state=create_train_state(config), train_step=step,
      data={'images': data.train_images.reshape(-1, IMAGE_PIXELS),
            'labels': data.train_labels.astype(np.int32)},
      num_examples=len(data.train_labels), meta=model_meta(config),
      compiler_options=fast_ops.cpu_compiler_options(config.model.ops))


def generator_params(config: ml_collections.ConfigDict, state: GanState):
  """The generator used for samples and evaluation: the moving average unless told otherwise."""
  return state.g_ema if config.eval.use_ema else state.g_params


def report_epoch(config, workdir: Path, state: GanState, epoch: int, logger: MetricLogger) -> None:
  """The fixed-noise grid (a row per class) as PNG and in TensorBoard."""
  labels = generate.class_grid_labels(range(NUM_CLASSES), 10)
  images = generate.generate(config, generator_params(config, state), labels, seed=config.seed)
  images = images.reshape(NUM_CLASSES, 10, 28, 28)
  path = workdir / 'samples' / f'epoch_{epoch + 1:03d}.png'
  save_labelled_grid(images, fashion_mnist.CLASS_NAMES, path)
  logger.image(int(state.step), 'samples', grid_image(images))


def train(config: ml_collections.ConfigDict, workdir: Path, data: fashion_mnist.FashionMnist,
          evaluate_generator=None) -> GanState:
  """Trains (resuming if possible) in `workdir`; returns the final state.

  `evaluate_generator`, `(g_params) -> metrics` with 'val_fid', is the per-epoch check (see
  `quality.epoch_metrics`); the checkpoint with the lowest `val_fid` is then kept besides the
  latest one.
  """
  evaluate = ((lambda state: {}) if evaluate_generator is None
              else lambda state: evaluate_generator(generator_params(config, state)))
  hooks = loop.EpochHooks(evaluate=evaluate,
                          report=functools.partial(report_epoch, config, workdir))
  return loop.train_in_workdir(build_task(config, data), config, workdir, hooks,
                               best_metric='val_fid' if evaluate_generator else '')


def restore_generator(config: ml_collections.ConfigDict, workdir: Path):
  """The latest checkpoint's generator params (after checking it fits this config)."""
  restored = restore.restore_trained(workdir, lambda: create_train_state(config),
                                           model_meta(config), train_command=TRAIN_COMMAND)
  return generator_params(config, restored.state)
