"""The train state of a single-network experiment (spam, textgen, the Fashion-MNIST classifier).

Each experiment builds its own with `create_train_state(config, ...)`; the cGAN has its own state
(two networks) and shares `step_key`.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly: a pytree that orbax saves whole.

  Attributes:
    step: train steps taken, int32 scalar.
    params: the model parameters.
    opt_state: the optax state.
    key: raw PRNG key data (uint32 [2]); typed key arrays do not checkpoint.
    schedule: host-side schedule state (e.g. reduce-on-plateau), or an empty dict.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array
  schedule: Any = flax.struct.field(default_factory=dict)

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation, key: jax.Array,
             schedule: Any = None) -> 'TrainState':
    """A fresh state at step 0; `key` is a typed PRNG key (stored as its raw data)."""
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               key=jax.random.key_data(key), schedule=schedule if schedule is not None else {})


def step_key(state: Any) -> jax.Array:
  """This step's typed PRNG key: the run's key folded with the step number."""
  return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation,
                    scale: jax.Array | float = 1.0) -> TrainState:
  """One optimizer update; `scale` multiplies the updates (the plateau schedule's lr factor)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  updates = jax.tree.map(lambda u: u * scale, updates)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)
