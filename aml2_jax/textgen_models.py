"""The character models of the text generator and the sampler that writes with them.

Both models read one-hot characters (implemented as a row lookup in `Recurrent`, same parameters
and maths) and end in Dense(vocab) logits:

  RNN:  SimpleRNN(278) -> Dropout(0.2) -> Dense(vocab)   142,731 parameters with vocab 117
  LSTM: LSTM(128) -> Dense(vocab)                        141,045 parameters with vocab 117

For the study's objective only the last step's output feeds the Dense layer (Keras
`return_sequences=False`); for `all_chars` every step's does. The parameters are the same either
way, so a model trained under one objective can be evaluated or sampled as the other.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aml2_jax import recurrent
from aml2_jax.recurrent import Recurrent


class CharModel(nn.Module):
  """Recurrent layer -> Dropout -> Dense(vocab) logits, over character ids.

  Attributes:
    vocab_size: number of characters (input one-hot width and output classes).
    units: recurrent hidden size.
    cell: 'simple' (tanh Elman RNN) or 'lstm'.
    dropout: dropout rate on the recurrent output (training only).
    all_steps: logits for every time step (all_chars) or only the last (next_char).
    unroll: time steps per scan iteration (speed only).
  """
  vocab_size: int
  units: int
  cell: str
  dropout: float = 0.0
  all_steps: bool = False
  unroll: int = 1

  @nn.compact
  def __call__(self, ids_BxT: jax.Array, initial_carry: recurrent.Carry | None = None, *,
               train: bool = False) -> tuple[recurrent.Carry, jax.Array]:
    """Runs the model over int ids [batch, time].

    Returns:
      (carry, logits): the recurrent layer's final carry, and float32 logits [batch, time, vocab]
      if `all_steps` else [batch, vocab] for the character after the last input.
    """
    carry, h_BxTxH = Recurrent(self.units, cell=self.cell, vocab_size=self.vocab_size,
                               unroll=self.unroll, name='recurrent')(ids_BxT, initial_carry)
    h = h_BxTxH if self.all_steps else recurrent.last_output(carry)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Keras' Dense initialiser (glorot_uniform, flax defaults to lecun_normal), as in `Recurrent`.
    logits = nn.Dense(self.vocab_size, kernel_init=nn.initializers.glorot_uniform(),
                      name='dense')(h)
    return carry, logits


def build_model(model_config: ml_collections.ConfigDict, vocab_size: int,
                all_steps: bool) -> CharModel:
  """The model of `config.model` for a vocabulary of `vocab_size` characters."""
  return CharModel(vocab_size=vocab_size, units=model_config.units, cell=model_config.cell,
                   dropout=model_config.dropout, all_steps=all_steps, unroll=model_config.unroll)


def pick_next(logits_V: jax.Array, key: jax.Array, temperature: float) -> jax.Array:
  """The next id from logits [vocab]: argmax at temperature 0, else a draw at temperature T."""
  if temperature == 0:
    return jnp.argmax(logits_V)
  return jax.random.categorical(key, logits_V / temperature)


class CharSampler:
  """Writes text a character at a time, seeing what the model saw in training.

  The model was trained on windows of `window` characters starting from a zero state, so each
  character is predicted from the last min(len(history), window) characters, from a zero state:
  while the history is shorter than a window, one recurrent step per character on the carried
  state (exactly a zero-state run over the whole history); from then on, a fresh run over the
  last `window` characters. Its functions are jitted once per sampler; params are arguments.
  """

  def __init__(self, model: CharModel, window: int):
    last_step = model.clone(all_steps=False, dropout=0.0)
    self.window = window
    self._step = jax.jit(lambda params, carry, id_11: last_step.apply(
        {'params': params}, id_11, carry))
    self._from_window = jax.jit(lambda params, ids_1xW: last_step.apply(
        {'params': params}, ids_1xW)[1])
    self._pick = jax.jit(pick_next, static_argnums=2)

  def generate(self, params: Any, context: Sequence[int], length: int, temperature: float,
               seed: int, stop_id: int | None = None) -> list[int]:
    """Up to `length` new ids continuing `context` (non-empty ids), reproducible for a seed.

    Stops before `stop_id` if it is drawn (it is not returned).
    """
    if not context:
      raise ValueError('context must hold at least one id (e.g. the end character)')
    history = [int(i) for i in context]
    key = jax.random.key(seed)
    carry, logits = None, None
    if len(history) <= self.window:
      carry, logits = self._prime(params, history)
    generated = []
    for i in range(length):
      if len(history) > self.window:
        logits = self._from_window(params, np.array([history[-self.window:]], np.int32))
      next_id = int(self._pick(logits[0], jax.random.fold_in(key, i), float(temperature)))
      if next_id == stop_id:
        break
      generated.append(next_id)
      history.append(next_id)
      if len(history) <= self.window:
        carry, logits = self._step(params, carry, np.array([[next_id]], np.int32))
    return generated

  def _prime(self, params, history: list[int]):
    """Carry and next-char logits after the history, one step per character from zero."""
    carry, logits = None, None  # None: `Recurrent` starts from zeros.
    for char_id in history:
      carry, logits = self._step(params, carry, np.array([[char_id]], np.int32))
    return carry, logits
