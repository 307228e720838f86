"""Running a jitted function over a whole data set in fixed-size batches."""

from typing import Callable

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
