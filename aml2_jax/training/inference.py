"""Batched, jitted inference over whole arrays: the one helper every experiment's eval uses.

`batched(fn, batch_size)` jits `fn(params, *batch)` once and returns a function that runs it over
arrays of any length in fixed-size batches (the last one padded), so each shape compiles once per
process. Experiments build their inference functions once per model (`functools.cache`) and pass
params as arguments, so a new checkpoint or a new epoch never triggers a recompilation.
"""

from typing import Any, Callable

import jax
import numpy as np


def map_in_batches(fn: Callable, *arrays: np.ndarray, batch_size: int = 1000) -> list[np.ndarray]:
  """Applies `fn(*batch) -> array or tuple of arrays` over the leading axis; concatenates.

  The last batch is padded to `batch_size` (so `fn` compiles once) and the padding cut off.
  """
  num = len(arrays[0])
  outputs = []
  for start in range(0, num, batch_size):
    batch = [a[start:start + batch_size] for a in arrays]
    real = len(batch[0])
    if real < batch_size:
      batch = [np.concatenate([b, np.repeat(b[-1:], batch_size - real, 0)]) for b in batch]
    result = fn(*batch)
    result = result if isinstance(result, tuple) else (result,)
    outputs.append([np.asarray(r)[:real] for r in jax.device_get(result)])
  return [np.concatenate(parts) for parts in zip(*outputs)]


def batched(fn: Callable[..., Any], batch_size: int) -> Callable[..., list[np.ndarray]]:
  """`(params, *arrays) -> [outputs]`: `fn(params, *batch)` jitted once, run batch by batch.

  Args:
    fn: a pure function of params (any pytree passed whole to every call) and batch arrays
      (split along their leading axis), returning an array or a tuple of arrays.
    batch_size: examples per call.
  """
  jitted = jax.jit(fn)

  def apply(params: Any, *arrays: np.ndarray) -> list[np.ndarray]:
    return map_in_batches(lambda *batch: jitted(params, *batch), *arrays, batch_size=batch_size)

  apply.jitted = jitted  # For tests and the portability export.
  return apply
