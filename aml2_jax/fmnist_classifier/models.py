"""A small CNN for Fashion-MNIST: the independent judge of the cGAN's images.

Its penultimate layer (`features`) is the feature space of the project's FID; its predictions give
the conditional accuracy and class coverage of generated images.
"""

import flax.linen as nn
import jax
import ml_collections

from aml2_jax.layers import fast_ops
from aml2_jax.layers.fast_ops import Conv3x3, max_pool_2x2


class FashionCNN(nn.Module):
  """images [batch, 28, 28] in [-1, 1] -> (logits [batch, 10], features [batch, feature_dim])."""
  channels: tuple[int, int] = (32, 64)
  feature_dim: int = 128
  dropout: float = 0.3
  fast: bool = True  # The CPU fast paths of convolution and pooling (see `layers.fast_ops`).

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    x = images[..., None]
    for i, channels in enumerate(self.channels):
      x = nn.relu(Conv3x3(channels, self.fast, name=f'conv_{i}')(x))
      x = max_pool_2x2(x, self.fast)
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.feature_dim, name='features')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(features)
    return nn.Dense(10, name='logits')(x), features


def make_model(config: ml_collections.ConfigDict) -> FashionCNN:
  m = config.model
  return FashionCNN(channels=tuple(m.channels), feature_dim=m.feature_dim, dropout=m.dropout,
                    fast=fast_ops.use_fast_ops(m.ops))
