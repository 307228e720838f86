"""The conditional GAN's MLP generator and discriminator (Fashion-MNIST, 28x28 grey images).

Both nets embed the class label in 10 dims and concatenate it to their input (`ConcatDense`: the
first Dense layer over the concatenation). With a latent of 100, LeakyReLU(0.2), dropout 0.3 in D
and a tanh image in [-1, 1] they have 1,489,012 (G) and 1,470,565 (D) parameters. `fast` selects
the CPU fast paths of `aml2_jax.layers.fast_ops` (same parameters and outputs).

Beyond the study, `projection` makes D class-aware at its output too (Miyato & Koyama 2018): the
logit gains <embed(y), h> for the last hidden features h, a 10 x 256 embedding (D: 1,473,125);
`classifier` makes D an AC-GAN's (Odena et al. 2017): no label input, and a class head on h (a
256 x 10 Dense; D: 1,462,795), which the losses train to name the class of real images and G to
make generated images of their class (`losses.class_loss`).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aml2_jax.layers import fast_ops
from aml2_jax.layers.fast_ops import ConcatDense, LayerDropout

IMAGE_PIXELS = 28 * 28
NUM_CLASSES = 10


class Generator(nn.Module):
  """(noise [batch, latent], labels [batch]) -> images [batch, 784] in [-1, 1]."""
  hidden: Sequence[int] = (256, 512, 1024)
  embed_dim: int = 10
  dtype: Any = jnp.float32  # Matmul compute dtype; params stay float32.
  fast: bool = True

  @nn.compact
  def __call__(self, noise: jax.Array, labels: jax.Array) -> jax.Array:
    embedded = nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels)
    first = ConcatDense(self.hidden[0], self.dtype, self.fast, name='dense_0')
    x = nn.leaky_relu(first(noise, embedded), 0.2)
    for i, width in enumerate(self.hidden[1:], 1):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x), 0.2)
    return jnp.tanh(nn.Dense(IMAGE_PIXELS, dtype=self.dtype, name='to_image')(x)).astype(jnp.float32)


class Discriminator(nn.Module):
  """(images [batch, 784] in [-1, 1], labels [batch]) -> real/fake logits [batch]."""
  hidden: Sequence[int] = (1024, 512, 256)
  embed_dim: int = 10
  dropout: float = 0.3
  dtype: Any = jnp.float32
  fast: bool = True
  projection: bool = False  # Add the projection term <embed(y), h> to the logit (beyond the study).
  classifier: bool = False  # Also return class logits from h (beyond the study).

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    """Logits [batch]; with `classifier`, [batch, 1 + 10]: the real/fake logit, then the class
    logits (`losses.split_logits` takes them apart)."""
    # With a class head D does not see the label (AC-GAN's D): the head would read it back.
    inputs = (images,) if self.classifier else (
        images, nn.Embed(NUM_CLASSES, self.embed_dim, name='label_embed')(labels))
    dropout = LayerDropout(self, self.hidden, len(images), self.dropout, train, self.fast)
    x = images
    for i, width in enumerate(self.hidden):
      x = ConcatDense(width, self.dtype, self.fast, name=f'dense_{i}')(*inputs) if i == 0 else (
          nn.Dense(width, dtype=self.dtype, name=f'dense_{i}')(x))
      x = dropout(nn.leaky_relu(x, 0.2), i)
    logit = nn.Dense(1, dtype=self.dtype, name='to_logit')(x)[:, 0].astype(jnp.float32)
    if self.projection:  # Scores how well the features match the label, not only realism.
      class_vectors = nn.Embed(NUM_CLASSES, self.hidden[-1], name='label_project')(labels)
      logit = logit + jnp.sum(class_vectors * x.astype(jnp.float32), axis=-1)
    if self.classifier:
      class_logits = nn.Dense(NUM_CLASSES, dtype=self.dtype, name='to_class')(x)
      return jnp.concatenate([logit[:, None], class_logits.astype(jnp.float32)], -1)
    return logit


def make_model(config: ml_collections.ConfigDict) -> tuple[Generator, Discriminator]:
  """(generator, discriminator) of `config.model`."""
  m = config.model
  dtype, fast = jnp.dtype(m.dtype), fast_ops.use_fast_ops(m.ops)
  return (Generator(tuple(m.g_hidden), m.embed_dim, dtype, fast),
          Discriminator(tuple(m.d_hidden), m.embed_dim, m.dropout, dtype, fast, m.d_projection,
                        m.d_classifier))
