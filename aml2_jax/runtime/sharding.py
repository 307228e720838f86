"""Data parallelism: one `data` mesh axis; params replicated, each batch split along the batch
axis, so XLA inserts the gradient all-reduce. Built once per run by the `Trainer`."""

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aml2_jax.errors import UserError


def data_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh named `data` over the first `num_devices` devices (0 = all, of all processes).

  A multi-process run must use all of them: every process holds part of the mesh.
  """
  devices = jax.devices()
  if num_devices > len(devices):
    raise UserError(f'config.num_devices={num_devices} but only {len(devices)} '
                    f'{devices[0].platform} device(s) exist; use a number up to {len(devices)}, '
                    'or 0 for all of them.')
  if jax.process_count() > 1 and num_devices not in (0, len(devices)):
    raise UserError(f'config.num_devices={num_devices} in a run of {jax.process_count()} '
                    f'processes: use 0 (all {len(devices)} devices of all processes).')
  return Mesh(np.array(devices[:num_devices or len(devices)]), ('data',))


def describe(mesh: Mesh) -> str:
  """'1 of 8 gpu devices (NVIDIA H200)': what a run trains on, for its first line."""
  device = mesh.devices.flat[0]
  processes = f', {jax.process_count()} processes' if jax.process_count() > 1 else ''
  return (f'{mesh.size} of {jax.device_count()} {device.platform} devices '
          f'({device.device_kind}{processes})')


def local_mesh() -> Mesh:
  """A mesh of this process's first device: where eval, sampling and prediction run."""
  return Mesh(np.array(jax.local_devices()[:1]), ('data',))


def replicated_like(tree: Any, mesh: Mesh | None = None) -> Any:
  """Every leaf's shape and dtype, replicated over `mesh` (default: `local_mesh()`): what orbax
  restores into. Without a sharding orbax takes the saved layout, which fails on fewer devices."""
  replicated = NamedSharding(mesh or local_mesh(), P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)


def _put(tree: Any, sharding: NamedSharding) -> Any:
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  # Multi-process: every process holds the same host values and places its own share of them.
  return jax.tree.map(lambda x: jax.make_array_from_callback(
      np.shape(x), sharding, lambda index: np.asarray(x)[index]), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` whole on every device of `mesh`."""
  return _put(tree, NamedSharding(mesh, P()))


def shard_batch_axis(array: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
  """Places a host array with its `axis` split over the `data` devices (global batch kept)."""
  spec = [None] * array.ndim
  spec[axis] = 'data'
  return _put(array, NamedSharding(mesh, P(*spec)))
