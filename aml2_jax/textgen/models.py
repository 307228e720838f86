"""The character models of the text generator.

Both models read one-hot characters (implemented as a row lookup in `Recurrent`, same parameters
and maths) and end in Dense(vocab) logits:

  RNN:  SimpleRNN(278) -> Dropout(0.2) -> Dense(vocab)   142,731 parameters with vocab 117
  LSTM: LSTM(128) -> Dense(vocab)                        141,045 parameters with vocab 117

For the study's objective only the last step's output feeds the Dense layer (Keras
`return_sequences=False`); for `all_chars` every step's does. Dropout on the input characters and
on the recurrent state (one mask per sequence, see `layers.recurrent`) is an option beyond the
study; none of it changes the parameters. The parameters are the same either
way, so a model trained under one objective can be evaluated or sampled as the other.
"""

import flax.linen as nn
import jax
import ml_collections

from aml2_jax.layers import recurrent
from aml2_jax.layers.recurrent import Recurrent
from aml2_jax.training import config as config_lib


class CharModel(nn.Module):
  """Recurrent layer -> Dropout -> Dense(vocab) logits, over character ids.

  Attributes:
    vocab_size: number of characters (input one-hot width and output classes).
    units: recurrent hidden size.
    cell: 'simple' (tanh Elman RNN) or 'lstm'.
    dropout: dropout rate on the recurrent output (training only).
    input_dropout: dropout rate on the one-hot input characters, one mask per sequence.
    recurrent_dropout: dropout rate on the recurrent state, one mask per sequence (variational).
    all_steps: logits for every time step (all_chars) or only the last (next_char).
    unroll: time steps per scan iteration (speed only).
  """
  vocab_size: int
  units: int
  cell: str
  dropout: float = 0.0
  all_steps: bool = False
  unroll: int = 1
  input_dropout: float = 0.0
  recurrent_dropout: float = 0.0

  @nn.compact
  def __call__(self, ids: jax.Array, initial_carry: recurrent.Carry | None = None, *,
               train: bool = False) -> tuple[recurrent.Carry, jax.Array]:
    """Runs the model over int ids [batch, time].

    Returns:
      (carry, logits): the recurrent layer's final carry, and float32 logits [batch, time, vocab]
      if `all_steps` else [batch, vocab] for the character after the last input.
    """
    carry, outputs = Recurrent(self.units, cell=self.cell, vocab_size=self.vocab_size,
                               unroll=self.unroll, input_dropout=self.input_dropout,
                               recurrent_dropout=self.recurrent_dropout,
                               name='recurrent')(ids, initial_carry, deterministic=not train)
    h = outputs if self.all_steps else recurrent.last_output(carry)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Keras' Dense initialiser (glorot_uniform, flax defaults to lecun_normal), as in `Recurrent`.
    logits = nn.Dense(self.vocab_size, kernel_init=nn.initializers.glorot_uniform(),
                      name='dense')(h)
    return carry, logits


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> CharModel:
  """The model of `config.model` and `config.objective` for `vocab_size` characters."""
  m = config.model
  return CharModel(vocab_size=vocab_size, units=m.units, cell=m.cell, dropout=m.dropout,
                   all_steps=config.objective == 'all_chars',
                   input_dropout=m.input_dropout,
                   recurrent_dropout=m.recurrent_dropout,
                   unroll=config_lib.per_backend(config, 'unroll', m.unroll))
