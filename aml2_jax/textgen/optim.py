"""The text generator's optimizers: the study's RMSProp with its plateau schedule, or AdamW.

The study's recipe (the configs' defaults): Keras' RMSprop at a constant rate, scaled by Keras'
ReduceLROnPlateau. Keras divides by sqrt(velocity + epsilon), epsilon inside the root, with rho
0.9 and epsilon 1e-7; `optax.rmsprop` places eps the same way by default (`eps_in_sqrt=True`) but
defaults eps to 1e-8, so the configs set eps 1e-7: Keras' update exactly.

Plateau schedule. `optax.contrib.reduce_on_plateau` is kept out of the optimizer chain (its update
needs the loss) and updated on the host once per epoch, after the epoch, with its mean training
loss; its `scale` lives in `TrainState.schedule` and multiplies every update of the next epoch, as
Keras' ReduceLROnPlateau sets the next epoch's learning rate. `config.optim.plateau=False` keeps
the scale at 1.

Beyond the study, each an option (`config.optim`): AdamW (`optimizer='adamw'`; weight decay on the
kernels only, not the biases), a linear warm-up over `warmup_epochs` then a cosine decay to
`end_lr_fraction` of the rate at the last step (`schedule='cosine'`), and clipping of the
gradients' global norm (`clip_norm`).
"""

import jax
import ml_collections
import optax

OPTIMIZERS = ('rmsprop', 'adamw')
SCHEDULES = ('constant', 'cosine')


def is_default(config: ml_collections.ConfigDict) -> bool:
  """Whether the optimizer is the study's: constant-rate RMSProp, unclipped, plateau on."""
  o = config.optim
  return (o.optimizer, o.schedule, o.clip_norm, o.plateau) == ('rmsprop', 'constant', 0.0, True)


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
                   steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """The optimizer chain of `config.optim` (the study's RMSProp by default).

  `steps_per_epoch` sets the schedule's length; the optimizer state's structure does not depend
  on it, so restoring may leave it at 1.
  """
  o = config.optim
  rate = learning_rate(config, steps_per_epoch)
  if o.optimizer == 'rmsprop':
    tx = optax.rmsprop(rate, decay=o.rho, eps=o.eps, eps_in_sqrt=o.eps_in_sqrt)
  else:
    tx = optax.adamw(rate, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=_kernels_only)
  if o.clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.clip_norm), tx)
  return tx


def make_plateau(config: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
  """Keras' ReduceLROnPlateau as optax's transform; one update per epoch, so patience = epochs."""
  o = config.optim
  return optax.contrib.reduce_on_plateau(factor=o.plateau_factor, patience=o.plateau_patience,
                                         rtol=o.plateau_rtol, atol=o.plateau_atol)


def make_plateau_update(config: ml_collections.ConfigDict):
  """`(schedule_state, epoch_loss) -> schedule_state`, jitted so it keeps the state's placement.

  The identity when `config.optim.plateau` is off.
  """
  if not config.optim.plateau:
    return lambda state, loss: state
  plateau = make_plateau(config)
  # The transform scales `updates`; only its state is wanted here, so it is given none.
  return jax.jit(lambda s, loss: plateau.update(updates={}, state=s, value=loss)[1])


def meta(config: ml_collections.ConfigDict) -> dict:
  """What a resumed run must share with its checkpoint beyond the study's optimizer (nothing for
  the study's, so older runs still resume): the optimizer fields and, for a schedule whose length
  is the run's, the number of epochs."""
  if is_default(config):
    return {}
  record = config.optim.to_dict()
  if config.optim.schedule != 'constant':
    record['num_epochs'] = config.num_epochs
  return {'optimizer': record}
