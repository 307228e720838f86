"""Data parallelism with `jax.sharding`: one `data` mesh axis over all devices.

Params and optimizer state are replicated; each step's batch indices are split along the batch
axis, so the batch gathered inside the jitted step is sharded and XLA inserts the gradient
all-reduce. On one device this is the same code path with a mesh of one. Multi-host runs call
`jax.distributed.initialize()` first (see `launch.py --distributed`).
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aml2_jax.errors import UserError


def data_mesh() -> Mesh:
  """A 1-D mesh named `data` over every device of every process."""
  return Mesh(np.array(jax.devices()), ('data',))


def local_mesh() -> Mesh:
  """A mesh of this process's first device: where eval, sampling and prediction run."""
  return Mesh(np.array(jax.local_devices()[:1]), ('data',))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.size:
    raise UserError(f'config.batch_size={batch_size} does not split over {mesh.size} devices; '
                    f'use a multiple of {mesh.size}.')


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` whole on every device."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch_axis(array: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
  """Places a host array with its `axis` split over the `data` devices (global batch kept)."""
  spec = [None] * array.ndim
  spec[axis] = 'data'
  sharding = NamedSharding(mesh, P(*spec))
  if jax.process_count() == 1:
    return jax.device_put(array, sharding)
  # Multi-host: every process holds the same global index array, so slice out its own share.
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
