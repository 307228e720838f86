"""A Keras-style `model.summary()` for flax params: one row per layer, then the total."""

from typing import Any, Mapping

import jax
import numpy as np


def count_params(params: Any) -> int:
  """Total number of parameters in a pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def param_table(params: Mapping, title: str = 'model') -> str:
  """Rows `layer | shapes | params` for each module that owns parameters, and a total line."""
  rows = [('layer', 'parameter shapes', 'params')]
  _collect(params, (), rows)
  widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
  line = '-' * (sum(widths) + 16)
  header, *body = [f'{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>12}' for a, b, c in rows]
  total = f'{"Total params":<{sum(widths) + 2}}  {count_params(params):>12,}'
  return '\n'.join([title, line, header, line, *body, line, total])


def _collect(tree: Mapping, path: tuple, rows: list) -> None:
  leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
  if leaves:
    shapes = ', '.join(f'{k}{list(v.shape)}' for k, v in leaves.items())
    rows.append(('/'.join(path) or '(root)', shapes, f'{count_params(leaves):,}'))
  for key, value in tree.items():
    if isinstance(value, Mapping):
      _collect(value, path + (key,), rows)
