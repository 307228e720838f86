"""CPU fast paths, each beside the plain Flax code it replaces; a config chooses between them.

The fast paths compute the same model (same parameters, initialisers and outputs, or the same
dropout statistics) as the plain code, in a way XLA:CPU runs faster; `tests/test_fast_ops.py`
checks each pair. The benchmark (`python -m aml2_jax.bench`) measures what they buy; docs/performance.md
has the figures. `config.model.ops` picks the path:

  'auto'   the fast path on the CPU backend, the plain one on GPU and TPU (the default);
  'fast'   the fast path everywhere;
  'plain'  the plain Flax path everywhere (`nn.Dense` over a concatenation, `nn.Dropout`,
           `nn.Conv`'s convolution, `nn.max_pool`).

Both paths have the same parameter tree, so a checkpoint trained with one restores with the other.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np

OPS = ('auto', 'fast', 'plain')


def use_fast_ops(ops: str) -> bool:
  """Whether `config.model.ops` selects the fast path on the current backend."""
  return ops == 'fast' or (ops == 'auto' and jax.default_backend() == 'cpu')


def cpu_compiler_options(ops: str) -> dict[str, Any]:
  """XLA options for a step chunk: region-analysis copy insertion, on the CPU fast path only.

  XLA:CPU's default copy insertion copies every donated buffer that the step both reads and
  updates in place (params, Adam moments); region analysis proves those copies unneeded. It
  helps the cGAN's step and slows the recurrent models, so only the cGAN asks for it; other
  backends do not read the option.
  """
  if use_fast_ops(ops) and jax.default_backend() == 'cpu':
    return {'xla_cpu_copy_insertion_use_region_analysis': True}
  return {}


# ------------------------------------------------------------------ dense over a concatenation


class ConcatDense(nn.Module):
  """`nn.Dense` over `concatenate(parts, -1)`: the same params, init and result.

  Fast path: each part is multiplied by its own rows of the kernel and the products summed, so
  backprop forms each part's input gradient separately and drops the ones nothing needs (the
  discriminator's step then skips a [batch, 794] input gradient kept only for 10 label-embedding
  columns). Plain path: `nn.Dense` on the concatenation.
  """
  features: int
  dtype: Any = jnp.float32
  fast: bool = True

  @nn.compact
  def __call__(self, *parts: jax.Array) -> jax.Array:
    """Parts [batch, width_i] -> [batch, features]."""
    ends = np.cumsum([p.shape[-1] for p in parts])
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (int(ends[-1]), self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    kernel = kernel.astype(self.dtype)
    if not self.fast:
      x = jnp.concatenate([p.astype(self.dtype) for p in parts], -1)
      return x @ kernel + bias.astype(self.dtype)
    y = sum(p.astype(self.dtype) @ kernel[end - p.shape[-1]:end] for p, end in zip(parts, ends))
    return y + bias.astype(self.dtype)


# ------------------------------------------------------------------ dropout


def uniform16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform integers in [0, 65536) (as uint32), four from each threefry hash.

  `jax.random.bits` spends one hash per 32-bit word (partitionable threefry); hashing counter
  pairs directly gives two words per hash, each split into two 16-bit draws: a quarter of the
  hashing, which on CPU is most of the cost of dropout.
  """
  size = math.prod(shape)
  if str(jax.random.key_impl(key)) != 'threefry2x32':  # Another --jax_default_prng_impl.
    return jax.random.randint(key, shape, 0, 65536).astype(jnp.uint32)
  counters = jnp.arange(-(-size // 2), dtype=jnp.uint32)
  words = jax.extend.random.threefry_2x32(jax.random.key_data(key), counters)
  return jnp.concatenate([words & 0xFFFF, words >> 16])[:size].reshape(shape)


def dropout16(x: jax.Array, draws: jax.Array, rate: float) -> jax.Array:
  """Dropout given `uniform16` draws shaped like `x`.

  16 bits quantise the drop probability to k/65536 (0.3 -> 0.300003); kept units are scaled by
  the exact keep probability, so E[out] = x.
  """
  drop_below = round(rate * 65536)
  keep_prob = jnp.asarray(1 - drop_below / 65536, x.dtype)
  return jnp.where(draws >= drop_below, x / keep_prob, jnp.zeros_like(x))


class LayerDropout:
  """Dropout for a stack of layers of known widths: one random draw for all of them (fast) or
  `nn.Dropout` per layer (plain).

  Create it inside a compact module's `__call__`; call it with each layer's output in order.
  """

  def __init__(self, module: nn.Module, widths: Sequence[int], batch: int, rate: float,
               train: bool, fast: bool):
    self.module, self.rate, self.fast = module, rate, fast
    self.active = train and rate > 0
    self.draws = None
    if self.active and fast:  # One draw call for all layers: each call costs CPU time of its own.
      all_draws = uniform16(module.make_rng('dropout'), (batch, sum(widths)))
      self.draws = jnp.split(all_draws, np.cumsum(widths)[:-1], axis=-1)

  def __call__(self, x: jax.Array, layer: int) -> jax.Array:
    """`x` [batch, widths[layer]] with dropout applied (in training)."""
    if not self.active:
      return x
    if self.fast:
      return dropout16(x, self.draws[layer], self.rate)
    return nn.Dropout(self.rate, deterministic=False)(x)  # Bound to the calling module.


# ------------------------------------------------------------------ convolution


class Conv3x3(nn.Module):
  """`nn.Conv(features, (3, 3))` ('SAME' padding, stride 1): the same params, init and result.

  Fast path: im2col, the nine shifted copies of the padded input side by side, then one matmul
  [batch * height * width, 9 * in] x [9 * in, features]. XLA:CPU runs a convolution inside a
  `lax.scan` without its fast conv kernels, but a matmul at full speed, so the CNN's train steps
  can be fused into chunks like every other model's. Plain path: the convolution `nn.Conv` runs.
  """
  features: int
  fast: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [batch, height, width, in] -> [batch, height, width, features]."""
    b, h, w, c = x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, c, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    if not self.fast:
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      return y + bias
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Patch column (i * 3 + j) * c + k is input channel k shifted by (i - 1, j - 1): the order of
    # the kernel's [3, 3, in] axes flattened.
    patches = jnp.concatenate([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
    y = patches.reshape(b * h * w, 9 * c) @ kernel.reshape(9 * c, self.features)
    return (y + bias).reshape(b, h, w, self.features)


# ------------------------------------------------------------------ pooling


def max_pool_2x2(x: jax.Array, fast: bool = True) -> jax.Array:
  """2x2 max pooling with stride 2 of [batch, height, width, channels].

  Fast path: a reshape and a max, whose gradient is a cheap comparison; XLA:CPU's gradient of
  `nn.max_pool` (select-and-scatter) is about 20 times slower. Plain path: `nn.max_pool`.
  """
  if not fast:
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
