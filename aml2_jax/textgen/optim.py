"""The text generator's optimizer chain: the study's RMSProp with its plateau schedule, or AdamW.

Keras' RMSprop divides by sqrt(velocity + epsilon) with rho 0.9 and epsilon 1e-7: `optax.rmsprop`
with `eps_in_sqrt=True` and the configs' eps 1e-7 is that update exactly. Keras' ReduceLROnPlateau
is `optax.contrib.reduce_on_plateau` at the end of the chain, fed every step's training loss and
deciding once per epoch on the epoch's mean (docs/textgen.md, "Optimizer"). A moving average of
the weights (`optim.ema_decay`) is the chain's last link, so the optimizer state carries it.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aml2_jax.training.train_state import ema_update

OPTIMIZERS = ('rmsprop', 'adamw')
SCHEDULES = ('constant', 'cosine')


def learning_rate(config: ml_collections.ConfigDict, steps_per_epoch: int = 1):
  """The rate: a float (constant), or an optax schedule of the step (warm-up, cosine)."""
  o = config.optim
  if o.schedule == 'constant':
    return o.learning_rate
  total = max(config.num_epochs * steps_per_epoch, 1)
  warmup = min(o.warmup_epochs * steps_per_epoch, total - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=o.learning_rate, warmup_steps=warmup, decay_steps=total,
      end_value=o.learning_rate * o.end_lr_fraction)


def _kernels_only(params):
  """True for the weight matrices, False for the biases: what weight decay applies to."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict,
                   steps_per_epoch: int = 1) -> optax.GradientTransformationExtraArgs:
  """The chain of `config.optim`; its update takes the step's loss (`value=`) for the plateau.

  `steps_per_epoch` sets the schedules' lengths; the state's structure does not depend on it, so
  restoring may leave it at 1.
  """
  o = config.optim
  rate = learning_rate(config, steps_per_epoch)
  parts = [optax.clip_by_global_norm(o.clip_norm)] if o.clip_norm > 0 else []
  if o.optimizer == 'rmsprop':
    parts.append(optax.rmsprop(rate, decay=o.rho, eps=o.eps, eps_in_sqrt=o.eps_in_sqrt))
  else:
    parts.append(optax.adamw(rate, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                             mask=_kernels_only))
  if o.plateau:
    parts.append(optax.contrib.reduce_on_plateau(
        factor=o.plateau_factor, patience=o.plateau_patience, rtol=o.plateau_rtol,
        atol=o.plateau_atol, accumulation_size=steps_per_epoch))
  if o.ema_decay:
    parts.append(weight_average(o.ema_decay))
  return optax.chain(*parts)


class AverageState(NamedTuple):
  average: optax.Params  # The moving average of the parameters after each update.


def weight_average(decay: float) -> optax.GradientTransformation:
  """Keeps `decay * average + (1 - decay) * new params` in its state; the updates pass unchanged.
  Last in a chain, it sees the final updates (optax has averages of updates, not of params)."""
  def update(updates, state, params):
    return updates, AverageState(ema_update(state.average, optax.apply_updates(params, updates),
                                            decay))
  return optax.GradientTransformation(lambda p: AverageState(jax.tree.map(jnp.copy, p)), update)


def eval_params(state):
  """The weights to validate, sample and test: the moving average when the chain keeps one."""
  return optax.tree_utils.tree_get(state.opt_state, 'average', state.params)


def plateau_scale(opt_state) -> jax.Array | float:
  """The plateau schedule's current factor on the learning rate (1 without one)."""
  return optax.tree_utils.tree_get(opt_state, 'scale', 1.0)
