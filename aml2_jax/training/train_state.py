"""The train state of every network: flax's `TrainState` plus the run's PRNG key."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax's state (step, params, opt_state; static apply_fn and tx) and `key`, the run's PRNG key
  as raw uint32 [2] data: typed key arrays do not checkpoint."""
  key: jax.Array

  @classmethod
  def create(cls, *, apply_fn, params, tx, key: jax.Array, **kwargs) -> 'TrainState':
    """A fresh state at step 0 from a typed PRNG `key`."""
    return int32_step(super().create(apply_fn=apply_fn, params=params, tx=tx,
                                     key=jax.random.key_data(key), **kwargs))

  def apply_gradients(self, *, grads: Any, **extra_args) -> 'TrainState':
    """One optimizer step; `extra_args` go to the optimizer (the loss, for reduce-on-plateau)."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params, **extra_args)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)


def net_state(apply_fn, params, tx) -> train_state.TrainState:
  """flax's plain TrainState of one network of several (the cGAN's), its step an int32 array."""
  return int32_step(train_state.TrainState.create(apply_fn=apply_fn, params=params, tx=tx))


def int32_step(state: train_state.TrainState) -> train_state.TrainState:
  """`state` at step 0 as an int32 array, not flax's Python 0, which the first jitted step
  would compile for apart from every later one."""
  return state.replace(step=jnp.zeros((), jnp.int32))


def step_key(state: Any) -> jax.Array:
  """This step's typed PRNG key: the run's key folded with the step number."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """The moving average after one step: decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
