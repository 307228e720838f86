"""The conditional GAN's MLP generator and discriminator (Fashion-MNIST, 28x28 grey images).

Both nets embed the class label in 10 dims and concatenate it to their input (`ConcatDense`: the
first Dense layer over the concatenation). With a latent of 100, LeakyReLU(0.2), dropout 0.3 in D
and a tanh image in [-1, 1] they have 1,489,012 (G) and 1,470,565 (D) parameters.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np

IMAGE_PIXELS = 28 * 28
NUM_CLASSES = 10


class ConcatDense(nn.Module):
  """`nn.Dense` over `concatenate(parts, -1)`: the same params, init and result.

  Each part is multiplied by its own rows of the kernel and the products summed, so backprop
  forms each part's input gradient separately and drops the ones nothing needs: the
  discriminator's step no longer computes a [batch, 794] input gradient for the sake of 10
  label-embedding columns (the largest single matmul of a CPU step).
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, *parts):
    ends = np.cumsum([p.shape[-1] for p in parts])
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (int(ends[-1]), self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    kernel = kernel.astype(self.dtype)
    y = sum(p.astype(self.dtype) @ kernel[end - p.shape[-1]:end] for p, end in zip(parts, ends))
    return y + bias.astype(self.dtype)


class Generator(nn.Module):
  """(noise [batch, latent], labels [batch]) -> images [batch, 784] in [-1, 1]."""
  hidden: Sequence[int] = (256, 512, 1024)
  embed_dim: int = 10
  dtype: Any = jnp.float32  # Matmul compute dtype; params stay float32.

  @nn.compact
  def __call__(self, noise, labels):
    embedded = nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels)
    x = nn.leaky_relu(ConcatDense(self.hidden[0], self.dtype, name='dense_0')(noise, embedded), 0.2)
    for i, width in enumerate(self.hidden[1:], 1):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x), 0.2)
    return jnp.tanh(nn.Dense(IMAGE_PIXELS, dtype=self.dtype, name='to_image')(x)).astype(jnp.float32)


def uniform16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform integers in [0, 65536) (as uint32), four from each threefry hash.

  `jax.random.bits` spends one hash per 32-bit word (partitionable threefry); hashing counter
  pairs directly gives two words per hash, each split into two 16-bit draws. On CPU the hashing
  was most of the discriminator's dropout cost: 16-bit draws, one draw call per network call
  and two words per hash took ~1.9 ms off a ~17 ms cGAN step (A/B, see README).
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


class Discriminator(nn.Module):
  """(images [batch, 784] in [-1, 1], labels [batch]) -> real/fake logits [batch]."""
  hidden: Sequence[int] = (1024, 512, 256)
  embed_dim: int = 10
  dropout: float = 0.3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, labels, train: bool):
    embedded = nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels)
    use_dropout = train and self.dropout > 0
    if use_dropout:  # One random draw for all layers: each draw call costs CPU time of its own.
      draws = jnp.split(uniform16(self.make_rng('dropout'), (len(images), sum(self.hidden))),
                        np.cumsum(self.hidden)[:-1], axis=-1)
    x = images
    for i, width in enumerate(self.hidden):
      x = ConcatDense(width, self.dtype, name=f'dense_{i}')(x, embedded) if i == 0 else (
          nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x))
      x = nn.leaky_relu(x, 0.2)
      if use_dropout:
        x = dropout16(x, draws[i], self.dropout)
    return nn.Dense(1, dtype=self.dtype, name='to_logit')(x)[:, 0].astype(jnp.float32)
