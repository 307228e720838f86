"""Batched, jitted inference over whole arrays: the one helper every experiment's eval uses."""

from typing import Any, Callable

import jax
import numpy as np


def batched(fn: Callable[..., Any], batch_size: int) -> Callable[..., list[np.ndarray]]:
  """`(params, *arrays) -> [outputs]`: `fn(params, *batch) -> array or tuple of arrays` jitted
  once and run over the arrays' leading axis in batches of `batch_size`, concatenated.

  The last batch is padded to `batch_size` (one compilation per shape and process; params are an
  argument, so a new checkpoint never recompiles) and the padding cut off.
  """
  jitted = jax.jit(fn)

  def apply(params: Any, *arrays: np.ndarray) -> list[np.ndarray]:
    outputs = []
    for start in range(0, len(arrays[0]), batch_size):
      batch = [a[start:start + batch_size] for a in arrays]
      real = len(batch[0])
      if real < batch_size:
        batch = [np.concatenate([b, np.repeat(b[-1:], batch_size - real, 0)]) for b in batch]
      result = jitted(params, *batch)
      result = result if isinstance(result, tuple) else (result,)
      outputs.append([np.asarray(r)[:real] for r in jax.device_get(result)])
    return [np.concatenate(parts) for parts in zip(*outputs)]

  apply.jitted = jitted  # For tests and the portability export.
  return apply
