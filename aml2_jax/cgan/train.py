"""The conditional GAN's training: its state, the jitted step, the task, and restoring a generator.

One jitted step updates the discriminator on real and generated images (scored in one batch),
then the generator with the non-saturating loss against the updated discriminator. The
generator's forward pass is shared by both updates (its VJP is kept for the generator step).
Recipe options beyond the study (`config.optim`): D's own learning rate (two time scales), the
hinge loss, an R1 penalty on real images, several D updates per G update, and the weight of the
class loss when D has a class head (`model.d_classifier`).
"""

import functools
from pathlib import Path
from typing import Any

import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax.cgan import generate, losses
from aml2_jax.cgan.models import IMAGE_PIXELS, NUM_CLASSES, make_model
from aml2_jax.datasets import fashion_mnist
from aml2_jax.layers import fast_ops
from aml2_jax.plotting.image_grid import grid_image, save_labelled_grid
from aml2_jax.training import loop, restore
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.train_state import ema_update, net_state, step_key

TRAIN_COMMAND = 'python launch.py --config=configs/cgan.py'


@flax.struct.dataclass
class GanState:
  """Both nets as flax TrainStates, the generator's moving average, the step and raw key data."""
  step: jax.Array
  g: train_state.TrainState
  g_ema: Any  # Exponential moving average of g.params (config.optim.g_ema_decay).
  d: train_state.TrainState
  key: jax.Array


def make_optimizer(config: ml_collections.ConfigDict,
                   net: str = 'g') -> optax.GradientTransformation:
  """Adam for the generator (`net='g'`) or the discriminator ('d'): D's rate is
  `optim.d_learning_rate` when set (two time scales), else the shared `optim.learning_rate`."""
  o = config.optim
  rate = o.d_learning_rate if net == 'd' and o.d_learning_rate else o.learning_rate
  return optax.adam(rate, b1=o.b1, b2=o.b2)


def create_train_state(config: ml_collections.ConfigDict) -> GanState:
  g, d = make_model(config)
  g_key, d_key, run_key = jax.random.split(jax.random.key(config.seed), 3)
  labels = jnp.zeros((1,), jnp.int32)
  g_params = g.init(g_key, jnp.zeros((1, config.model.latent_dim)), labels)['params']
  d_params = d.init(d_key, jnp.zeros((1, IMAGE_PIXELS)), labels, train=False)['params']
  return GanState(
      step=jnp.zeros((), jnp.int32), key=jax.random.key_data(run_key),
      g=net_state(g.apply, g_params, make_optimizer(config, 'g')),
      g_ema=jax.tree.map(jnp.copy, g_params),  # Own buffers: both are donated.
      d=net_state(d.apply, d_params, make_optimizer(config, 'd')))


def train_step(state: GanState, data: dict, batch_idx: jax.Array, *, latent_dim: int,
               real_label: float, ema_decay: float, loss: str = 'bce', r1_weight: float = 0.0,
               d_steps: int = 1, class_weight: float = 1.0) -> tuple[GanState, dict]:
  """One discriminator update, then one generator update (only every `d_steps`-th step).

  Args:
    state: both nets' states, the moving average, the step.
    data: uint8 'images' [num, 784] and int32 'labels' [num], gathered with `batch_idx`.
    batch_idx: int32 [batch].
    latent_dim, real_label, ema_decay, loss ('bce' | 'hinge'), r1_weight (0 = no penalty),
      d_steps, class_weight (of a class head's loss): the recipe, bound with functools.partial.
  """
  images = data['images'][batch_idx].astype(jnp.float32) / 127.5 - 1.0
  labels = data['labels'][batch_idx]
  noise_key, label_key, d_drop, g_drop = jax.random.split(step_key(state), 4)
  noise = jax.random.normal(noise_key, (len(batch_idx), latent_dim))
  fake_labels = jax.random.randint(label_key, (len(batch_idx),), 0, NUM_CLASSES)
  fake, g_vjp = jax.vjp(lambda p: state.g.apply_fn({'params': p}, noise, fake_labels),
                        state.g.params)

  def d_loss_fn(d_params):
    def logits_of(real):  # Real and generated images scored in one batch.
      logits = state.d.apply_fn({'params': d_params}, jnp.concatenate([real, fake]),
                                jnp.concatenate([labels, fake_labels]), train=True,
                                rngs={'dropout': d_drop})
      return jnp.split(logits, 2)
    extra = {}
    if r1_weight:
      # R1: the gradient of the sum of real logits wrt the real images, from the same forward pass.
      (real_out, fake_out), logits_vjp = jax.vjp(logits_of, images)
      realness = jnp.ones_like(real_out) if real_out.ndim == 1 else (
          jnp.zeros_like(real_out).at[:, 0].set(1.0))  # Not the class logits.
      (input_grads,) = logits_vjp([realness, jnp.zeros_like(fake_out)])
      extra['r1'] = losses.r1_penalty(input_grads, r1_weight)
    else:
      real_out, fake_out = logits_of(images)
    (real_logits, real_classes), (fake_logits, _) = map(losses.split_logits, (real_out, fake_out))
    if real_classes is not None:  # D learns to name the class of real images only.
      extra['d_class'] = losses.class_loss(real_classes, labels, class_weight)
    d_loss = losses.discriminator_loss(real_logits, fake_logits, real_label, loss)
    return d_loss + sum(extra.values()) if extra else d_loss, (real_logits, fake_logits, extra)

  (d_loss, (real_logits, fake_logits, extra)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d.params)
  d_state = state.d.apply_gradients(grads=d_grads)

  def g_loss_fn(fake_images):  # Against the updated D.
    logits, classes = losses.split_logits(d_state.apply_fn(
        {'params': d_state.params}, fake_images, fake_labels, train=True, rngs={'dropout': g_drop}))
    g_loss = losses.generator_loss(logits, loss)
    return g_loss if classes is None else g_loss + losses.class_loss(classes, fake_labels,
                                                                     class_weight)

  def g_update(_):
    g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = g_vjp(fake_grads)
    g_state = state.g.apply_gradients(grads=g_grads)
    return g_state, ema_update(state.g_ema, g_state.params, ema_decay), g_loss

  if d_steps == 1:
    g_state, g_ema, g_loss = g_update(None)
  else:  # G (and its average) move on the last of every d_steps steps only.
    keep = lambda _: (state.g, state.g_ema, jnp.zeros((), jnp.float32))
    g_state, g_ema, g_loss = jax.lax.cond(state.step % d_steps == d_steps - 1, g_update, keep,
                                          None)
    g_loss = g_loss * d_steps  # So that an epoch's mean is the mean over G's updates.
  state = state.replace(step=state.step + 1, g=g_state, g_ema=g_ema, d=d_state)
  return state, {'d_loss': d_loss, 'g_loss': g_loss,
                 'd_real': jax.nn.sigmoid(real_logits).mean(),
                 'd_fake': jax.nn.sigmoid(fake_logits).mean(), **extra}


def model_meta(config: ml_collections.ConfigDict) -> dict:
  """What a checkpoint must match (see `restore.checkpoint_meta`)."""
  return restore.checkpoint_meta(config, 'cgan', new_model_fields={'d_projection': False,
                                                                 'd_classifier': False})


def build_task(config: ml_collections.ConfigDict,
               data: fashion_mnist.FashionMnist) -> loop.TrainTask:
  """The training task for the shared loop (also what the benchmark times)."""
  o = config.optim
  step = functools.partial(train_step, latent_dim=config.model.latent_dim,
                           real_label=o.real_label, ema_decay=o.g_ema_decay, loss=o.loss,
                           r1_weight=o.r1_weight, d_steps=o.d_steps, class_weight=o.class_weight)
  return loop.TrainTask(
      state=create_train_state(config), train_step=step,
      data={'images': data.train_images.reshape(-1, IMAGE_PIXELS),
            'labels': data.train_labels.astype(np.int32)},
      num_examples=len(data.train_labels), meta=model_meta(config),
      compiler_options=fast_ops.cpu_compiler_options(config.model.ops))


def generator_params(config: ml_collections.ConfigDict, state: GanState):
  """The generator used for samples and evaluation: the moving average unless told otherwise."""
  return state.g_ema if config.eval.use_ema else state.g.params


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
