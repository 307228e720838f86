"""A Keras-style `model.summary()` for flax params: one row per layer, then the total."""

from typing import Any, Mapping

import jax
import numpy as np


def count_params(params: Any) -> int:
  """Total number of parameters in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def param_table(params: Mapping, title: str = 'model') -> str:
  """Rows `layer | shapes | params` for each module that owns parameters, and a total line."""
  rows = []
  _collect(params, (), rows)
  width = max([len('layer')] + [len(name) for name, _, _ in rows])
  shapes_width = max([len('parameter shapes')] + [len(s) for _, s, _ in rows])
  line = '-' * (width + shapes_width + 16)
  out = [title, line, f'{"layer":<{width}}  {"parameter shapes":<{shapes_width}}  {"params":>12}', line]
  out += [f'{name:<{width}}  {shapes:<{shapes_width}}  {count:>12,}' for name, shapes, count in rows]
  out += [line, f'{"Total params":<{width + shapes_width + 2}}  {count_params(params):>12,}']
  return '\n'.join(out)


def _collect(tree: Mapping, path: tuple, rows: list) -> None:
  leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
  if leaves:
    shapes = ', '.join(f'{k}{list(v.shape)}' for k, v in leaves.items())
    rows.append(('/'.join(path) or '(root)', shapes, count_params(leaves)))
  for key, value in tree.items():
    if isinstance(value, Mapping):
      _collect(value, path + (key,), rows)
