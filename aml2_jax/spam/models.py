"""The SMS spam classifiers: word embedding -> one recurrent layer -> dense head -> one logit.

One module, `SpamClassifier`, builds both models of the study:

  RNN:  Embedding(5000, 50) -> SimpleRNN(32) -> Dense(256, ReLU) -> Dropout(0.25) -> Dense(1)
        = 261,361 parameters (`cell='simple', hidden=(256,)`).
  LSTM: Embedding(5000, 50) -> LSTM(32) -> Dense(1)
        = 260,657 parameters (`cell='lstm', hidden=()`).

The models return logits; the sigmoid of the Keras originals lives in the loss
(`optax.sigmoid_binary_cross_entropy`) and in `spam_probability`, which is more stable.

Initialisers follow Keras' defaults, so the starting point matches the study's: embeddings uniform
in [-0.05, 0.05] (flax's `nn.Embed` default is a unit normal, 20x larger), dense kernels
glorot-uniform with zero biases (flax's default is lecun-normal). The recurrent layer's own Keras
initialisers are set in `aml2_jax.layers.recurrent`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aml2_jax.layers.recurrent import Recurrent, last_output
from aml2_jax.training import config as config_lib

_KERAS_DENSE_INIT = nn.initializers.glorot_uniform()


def _keras_embed_init(key: jax.Array, shape: tuple[int, ...],
                      dtype: Any = jnp.float32) -> jax.Array:
  """Keras' `RandomUniform(-0.05, 0.05)`, the default `Embedding` initialiser."""
  return jax.random.uniform(key, shape, dtype, minval=-0.05, maxval=0.05)


class SpamClassifier(nn.Module):
  """Token ids [batch, time] (pre-padded with 0) -> spam logits [batch].

  Attributes:
    cell: 'simple' (tanh Elman RNN) or 'lstm'.
    vocab_size: embedding rows; the tokenizer's `num_words` (ids are in [0, vocab_size)).
    embed_dim: embedding width.
    units: recurrent hidden size.
    hidden: widths of the ReLU dense layers between the recurrent layer and the logit.
    dropout: dropout rate after each hidden dense layer (training only).
    unroll: time steps per scan iteration of the recurrent layer (speed only).
  """
  cell: str = 'lstm'
  vocab_size: int = 5000
  embed_dim: int = 50
  units: int = 32
  hidden: tuple[int, ...] = ()
  dropout: float = 0.0
  unroll: int = 1

  @nn.compact
  def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
    """Returns the spam logit of each message, float32 [batch], of int ids [batch, time]."""
    x = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=_keras_embed_init,
                 name='embedding')(ids)
    carry, _ = Recurrent(self.units, cell=self.cell, unroll=self.unroll, name='recurrent')(x)
    # Pre-padding puts the last real word at the last step, so the final state sums up the message.
    x = last_output(carry)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=_KERAS_DENSE_INIT, name=f'dense_{i}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(1, kernel_init=_KERAS_DENSE_INIT, name='logit')(x)[:, 0]


def spam_probability(logits: jax.Array) -> jax.Array:
  """P(spam) from the model's logits (same shape)."""
  return jax.nn.sigmoid(logits)


def make_model(config: ml_collections.ConfigDict) -> SpamClassifier:
  """The classifier of `config.model` over `config.data.num_words` token ids."""
  m = config.model
  return SpamClassifier(cell=m.cell, vocab_size=config.data.num_words, embed_dim=m.embed_dim,
                        units=m.units, hidden=tuple(m.hidden), dropout=m.dropout,
                        unroll=config_lib.per_backend(config, 'unroll', m.unroll))
