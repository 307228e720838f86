"""The conditional GAN's MLP generator and discriminator (Fashion-MNIST, 28x28 grey images).

Both nets embed the class label in 10 dims and concatenate it to their input. With a latent of
100, LeakyReLU(0.2), dropout 0.3 in D and a tanh image in [-1, 1] they have 1,489,012 (G) and
1,470,565 (D) parameters.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

IMAGE_PIXELS = 28 * 28
NUM_CLASSES = 10


class Generator(nn.Module):
  """(noise [batch, latent], labels [batch]) -> images [batch, 784] in [-1, 1]."""
  hidden: Sequence[int] = (256, 512, 1024)
  embed_dim: int = 10
  dtype: Any = jnp.float32  # Matmul compute dtype; params stay float32.

  @nn.compact
  def __call__(self, noise, labels):
    x = jnp.concatenate([noise, nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels)], -1)
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x), 0.2)
    return jnp.tanh(nn.Dense(IMAGE_PIXELS, dtype=self.dtype, name='to_image')(x)).astype(jnp.float32)


class Discriminator(nn.Module):
  """(images [batch, 784] in [-1, 1], labels [batch]) -> real/fake logits [batch]."""
  hidden: Sequence[int] = (1024, 512, 256)
  embed_dim: int = 10
  dropout: float = 0.3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, labels, train: bool):
    x = jnp.concatenate([images, nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels)], -1)
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x), 0.2)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(1, dtype=self.dtype, name='to_logit')(x)[:, 0].astype(jnp.float32)
