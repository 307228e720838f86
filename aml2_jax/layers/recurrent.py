"""Keras-compatible simple (Elman) RNN and LSTM layers, scanned over time.

One layer, `Recurrent`, serves every experiment. The input projection of all time steps is one
big matmul (or, for token ids, one row gather) done before the scan, so the scanned body holds only
the recurrent matmul and the gate nonlinearities.

Parameters follow Keras' layout and default initialisers, so parameter counts and weights match a
Keras `SimpleRNN` / `LSTM`:

  kernel                 [in, G * units]     glorot_uniform   (in = vocab_size for token ids)
  bias                   [G * units]         zeros; LSTM forget gate ones (`unit_forget_bias=True`)
  cell/recurrent_kernel  [units, G * units]  orthogonal

with G = 1 (simple) or 4 (LSTM, Keras gate order i, f, c, o). Flax's own cells differ (separate
biases per input/hidden Dense, forget bias 0); Keras' choice is kept so the models match the Keras
originals. The activations are Keras' defaults: tanh, and sigmoid for the LSTM gates.

Dropout, as Keras' `LSTM(dropout=..., recurrent_dropout=...)` and Gal & Ghahramani's variational
RNN dropout (off by default): `input_dropout` drops input features and `recurrent_dropout` units
of the state fed to the recurrent matmul, each with one mask per sequence, the same at every time
step. The masks are drawn outside the scan from the 'dropout' stream, so the scanned body needs
no rng of its own.

Sequences are expected pre-padded (Keras `pad_sequences` default), so the last time step is the
last real token and no masking is needed.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = Any  # simple: h [batch, units]; LSTM: (c, h), each [batch, units], as in flax.

_GATES = {'simple': 1, 'lstm': 4}


def _matmul(x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
  """`x @ w` computed in `dtype`, accumulated and returned in float32."""
  return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _keras_bias_init(cell: str, units: int) -> nn.initializers.Initializer:
  """Zeros, except ones on the LSTM forget gate (Keras `unit_forget_bias=True`)."""

  def init(key, shape, dtype=jnp.float32):
    del key
    bias = jnp.zeros(shape, dtype)
    if cell == 'lstm':
      bias = bias.at[units:2 * units].set(1.0)  # Gate order i, f, c, o.
    return bias

  return init


def last_output(carry: Carry) -> jax.Array:
  """Returns the layer's output at the last time step, `h` [batch, units], from a final carry.

  Equal to `outputs[:, -1]`; with pre-padded inputs this is the summary of the whole sequence.
  """
  return carry[1] if isinstance(carry, tuple) else carry


class _Step(nn.Module):
  """One time step: the recurrent matmul plus the nonlinearity, on a precomputed projection."""
  units: int
  cell: str
  dtype: Any

  @nn.compact
  def __call__(self, carry: Carry, x_proj: jax.Array,
               h_mask: jax.Array | None = None) -> tuple[Carry, jax.Array]:
    """Advances one step. `x_proj` [batch, G * units] is `x_t @ kernel + bias`; `h_mask`
    [batch, units], if given, scales the previous state before the recurrent matmul."""
    recurrent_kernel = self.param('recurrent_kernel', nn.initializers.orthogonal(),
                                  (self.units, _GATES[self.cell] * self.units))
    if self.cell == 'simple':
      h_in = carry if h_mask is None else carry * h_mask
      h = jnp.tanh(x_proj + _matmul(h_in, recurrent_kernel, self.dtype))
      return h, h
    c, h = carry
    h_in = h if h_mask is None else h * h_mask
    z = x_proj + _matmul(h_in, recurrent_kernel, self.dtype)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


class Recurrent(nn.Module):
  """A Keras-style `SimpleRNN` or `LSTM` returning the carry and the full output sequence.

  Attributes:
    units: hidden size.
    cell: 'lstm' or 'simple' (tanh Elman RNN).
    vocab_size: if set, inputs are int token ids [batch, time] and the one-hot input is applied
      as a row lookup `kernel[ids]` (same parameters and maths as a one-hot matmul). Ids >=
      vocab_size give NaN outputs rather than a silently clamped row.
    unroll: time steps per scan iteration; a speed knob only, results are unchanged.
    dtype: compute dtype of the matmuls (e.g. jnp.bfloat16). Parameters, the carry and the
      outputs stay float32 and matmuls accumulate in float32.
    input_dropout: rate of dropout on the input features (one-hot characters for ids), one mask
      per sequence; training only (`deterministic=False`).
    recurrent_dropout: rate of dropout on the state entering the recurrent matmul, one mask per
      sequence (variational); training only.
  """
  units: int
  cell: str = 'lstm'
  vocab_size: int | None = None
  unroll: int = 1
  dtype: Any = jnp.float32
  input_dropout: float = 0.0
  recurrent_dropout: float = 0.0

  @nn.compact
  def __call__(self, inputs: jax.Array, initial_carry: Carry | None = None, *,
               deterministic: bool = True) -> tuple[Carry, jax.Array]:
    """Runs the layer over time.

    Args:
      inputs: float [batch, time, features], or int ids [batch, time] when `vocab_size` is set.
      initial_carry: a carry from a previous call (e.g. to continue sampling); zeros if None.
      deterministic: no dropout (evaluation); else the dropout masks come from the 'dropout' rng.

    Returns:
      (carry, outputs): the final carry and the outputs `h` [batch, time, units].
    """
    if self.cell not in _GATES:
      raise ValueError(f"cell must be one of {sorted(_GATES)}, got {self.cell!r}")
    x_proj = self._project(inputs, deterministic)  # [batch, time, G * units]
    if initial_carry is None:
      initial_carry = self._zero_carry(inputs.shape[0])
    xs = (jnp.swapaxes(x_proj, 0, 1),)  # Scan over a time-major copy.
    in_axes = 0
    if self.recurrent_dropout > 0 and not deterministic:
      # One mask for every step: a broadcast input of the scan, not a per-step rng.
      xs += (self._mask((inputs.shape[0], self.units), self.recurrent_dropout),)
      in_axes = (0, nn.broadcast)
    scan = nn.scan(_Step, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=in_axes, out_axes=0, unroll=self.unroll)
    carry, outputs = scan(self.units, self.cell, self.dtype, name='cell')(initial_carry, *xs)
    return carry, jnp.swapaxes(outputs, 0, 1)

  def _mask(self, shape: tuple[int, ...], rate: float) -> jax.Array:
    """A dropout mask float32 `shape`: 0 with probability `rate`, else 1 / (1 - rate)."""
    keep = jax.random.bernoulli(self.make_rng('dropout'), 1.0 - rate, shape)
    return keep.astype(jnp.float32) / (1.0 - rate)

  def _project(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
    """Input projection of all time steps at once: [batch, time, G * units], float32."""
    lookup = self.vocab_size is not None
    expected_ndim = 2 if lookup else 3
    if inputs.ndim != expected_ndim or lookup != jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(
          f"Recurrent(vocab_size={self.vocab_size}) expects "
          f"{'int ids [batch, time]' if lookup else 'float [batch, time, features]'}, "
          f"got {inputs.dtype} {inputs.shape}")
    size = _GATES[self.cell] * self.units
    in_features = self.vocab_size if lookup else inputs.shape[-1]
    kernel = self.param('kernel', nn.initializers.glorot_uniform(), (in_features, size))
    bias = self.param('bias', _keras_bias_init(self.cell, self.units), (size,))
    mask = None
    if self.input_dropout > 0 and not deterministic:
      mask = self._mask((inputs.shape[0], in_features), self.input_dropout)  # [batch, in]
    if lookup:
      # One-hot @ kernel is a row gather; jnp.take fills ids past the end with NaN.
      rows = jnp.take(kernel, inputs, axis=0)
      if mask is not None:  # The one-hot input times the mask: each row times its id's entry.
        rows = rows * jnp.take_along_axis(mask, inputs, axis=1)[..., None]
      return rows + bias
    if mask is not None:
      inputs = inputs * mask[:, None, :]
    return jnp.einsum('bti,ig->btg', inputs.astype(self.dtype), kernel.astype(self.dtype),
                      preferred_element_type=jnp.float32) + bias

  def _zero_carry(self, batch_size: int) -> Carry:
    h = jnp.zeros((batch_size, self.units), jnp.float32)
    return (h, h) if self.cell == 'lstm' else h
