"""Markdown and number formatting shared by the tables."""

from typing import Sequence

DASH = '–'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A Markdown table."""
  lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
  lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
  return '\n'.join(lines)


def number(value, digits: int = 2, scale: float = 1.0) -> str:
  """`value * scale` with `digits` decimals, or a dash when it is missing."""
  if not isinstance(value, (int, float)):
    return DASH
  return f'{value * scale:,.{digits}f}'


def percent(value, digits: int = 2) -> str:
  """A fraction as a percentage without the sign (0.9880 -> '98.80')."""
  return number(value, digits, 100.0)


def mean_std(results: dict | None, name: str, digits: int = 2, scale: float = 100.0) -> str:
  """'98.80 ± 0.22' from `name` and `name_std` of a several-seed results.json."""
  if not results or not isinstance(results.get(name), (int, float)):
    return DASH
  text = number(results[name], digits, scale)
  std = results.get(f'{name}_std')
  return f'{text} ± {number(std, digits, scale)}' if isinstance(std, (int, float)) else text


def span(values: Sequence[int]) -> str:
  """'1,012–1,020' (or one value when all are equal); a dash when there are none."""
  values = [v for v in values if isinstance(v, (int, float))]
  if not values:
    return DASH
  low, high = min(values), max(values)
  return f'{low:,}' if low == high else f'{low:,}–{high:,}'


def duration(seconds) -> str:
  """'434 s (7.2 min)', '2.1 h'; a dash when unknown."""
  if not isinstance(seconds, (int, float)):
    return DASH
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds:,.0f} s ({seconds / 60:.1f} min)'
  return f'{seconds / 3600:.1f} h'
