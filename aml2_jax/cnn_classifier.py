"""A small CNN for Fashion-MNIST: the independent judge of the cGAN's images.

Its penultimate layer (`features`) is the feature space of the project's FID; its predictions give
the conditional accuracy and class coverage of generated images.
"""

import flax.linen as nn
import jax.numpy as jnp


class FashionCNN(nn.Module):
  """images [batch, 28, 28] in [-1, 1] -> (logits [batch, 10], features [batch, feature_dim])."""
  channels: tuple[int, int] = (32, 64)
  feature_dim: int = 128
  dropout: float = 0.3

  @nn.compact
  def __call__(self, images, train: bool = False):
    x = images[..., None]
    for i, channels in enumerate(self.channels):
      x = nn.relu(nn.Conv(channels, (3, 3), name=f'conv_{i}')(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.feature_dim, name='features')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(features)
    return nn.Dense(10, name='logits')(x), features
