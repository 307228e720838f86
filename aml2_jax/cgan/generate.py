"""Drawing images from a generator: batched, jitted once per model, reproducible for a seed."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aml2_jax.cgan.models import NUM_CLASSES, Generator, make_model
from aml2_jax.training import inference

BATCH = 1000  # Images per jitted call (one compiled shape).


def class_grid_labels(classes, num_per_class: int) -> np.ndarray:
  """Labels int32 [len(classes) * num_per_class]: each class repeated, in order."""
  return np.repeat(np.asarray(classes, np.int32), num_per_class)


@functools.cache
def _images_fn(g: Generator):
  """`(params, noise [num, latent], labels [num]) -> [uint8 images [num, 28, 28]]`, batched."""

  def images(params, noise, labels):
    out = g.apply({'params': params}, noise, labels)
    return jnp.round((out + 1.0) * 127.5).clip(0, 255).astype(jnp.uint8).reshape(-1, 28, 28)

  return inference.batched(images, BATCH)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _batch_noise(key: jax.Array, batch: int, latent_dim: int) -> jax.Array:
  return jax.random.normal(key, (batch, latent_dim))


def noise(seed: int, num: int, latent_dim: int) -> np.ndarray:
  """Noise [num, latent_dim]: batch i of `BATCH` rows drawn from fold_in(key(seed), i)."""
  key = jax.random.key(seed)
  draws = [_batch_noise(jax.random.fold_in(key, i), BATCH, latent_dim)
           for i in range(-(-num // BATCH))]
  return np.concatenate([np.asarray(d) for d in draws])[:num]


def generate(config: ml_collections.ConfigDict, g_params, labels: np.ndarray,
             seed: int) -> np.ndarray:
  """uint8 images [num, 28, 28] for int `labels` [num], reproducible for `seed`."""
  g, _ = make_model(config)
  z = noise(seed, len(labels), config.model.latent_dim)
  (images,) = _images_fn(g)(g_params, z, np.asarray(labels, np.int32))
  return images


def class_grid(config: ml_collections.ConfigDict, g_params, num_per_class: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 images [10 * num_per_class, 28, 28], labels): `num_per_class` of every class."""
  labels = class_grid_labels(range(NUM_CLASSES), num_per_class)
  return generate(config, g_params, labels, seed), labels
