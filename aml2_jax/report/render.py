"""Cells and Markdown: `fill(template, get)` formats a cell of a table declared in tables.toml.

A cell is text with fields `{name}` or `{name:spec}`: `get(name)` gives the value, and `spec` is
one of `SPECS` (which also see `get(name + '_std')`) or one of Python's (`,`, `.1f`). A missing
value is a dash.
"""

import re
from pathlib import Path

DASH = '–'
FIELD = re.compile(r'\{([^{}:]+)(?::([^{}]*))?\}')


def number(value, digits: int = 2, scale: float = 1.0) -> str:
  return f'{value * scale:,.{digits}f}' if isinstance(value, (int, float)) else DASH


def mean_std(value, std, digits: int = 2, scale: float = 100.0) -> str:
  """'98.80 ± 0.22' (in % by default); the mean alone when there is no std."""
  text = number(value, digits, scale)
  return f'{text} ± {number(std, digits, scale)}' if isinstance(std, (int, float)) else text


def duration(s) -> str:
  """'80 s', '434 s (7.2 min)', '2.1 h' of `s` seconds."""
  if not isinstance(s, (int, float)):
    return DASH
  return (f'{s:.0f} s' if s < 120 else f'{s:,.0f} s ({s / 60:.1f} min)' if s < 7200
          else f'{s / 3600:.1f} h')


def _span(values) -> str:
  """'1,012–1,020', or one value when all are equal."""
  values = sorted(v for v in values or [] if isinstance(v, (int, float)))
  return (f'{values[0]:,}' + (f'–{values[-1]:,}' if values[-1] != values[0] else '') if values
          else DASH)


SPECS = {  # name: (value, std) -> text
    **{name: (lambda v, _, d=d: number(v, d, 100)) for name, d in (('pct', 2), ('pct0', 0),
                                                                    ('pct1', 1))},
    **{f'n{d}': (lambda v, _, d=d: number(v, d)) for d in range(5)},
    'ms': mean_std, 'ms1': lambda v, s: mean_std(v, s, 1, 1.0),
    'ms3': lambda v, s: mean_std(v, s, 3, 1.0), 'span': lambda v, _: _span(v),
    'dur': lambda v, _: duration(v), 'len': lambda v, _: str(len(v)) if v else DASH,
    'list': lambda v, _: ', '.join(map(str, v)) if v else DASH,
    'code': lambda v, _: ' '.join(f'`{x}`' for x in v) if v else 'nothing',
}


def fill(template: str, get) -> str:
  """`template` with each `{name:spec}` replaced, the value from `get(name)`."""
  def cell(field: re.Match) -> str:
    value, spec = get(field[1]), field[2] or ''
    if spec in SPECS:
      return SPECS[spec](value, get(f'{field[1]}_std'))
    return DASH if value is None else format(value, spec)
  return FIELD.sub(cell, template)


def markdown(header, rows) -> str:
  lines = [header, ['---'] * len(header), *rows]
  return '\n'.join('| ' + ' | '.join(str(cell) for cell in line) + ' |' for line in lines)


def page_link(page_dir: Path, page: str) -> str:
  """A link to docs/`page` from a page in `page_dir`."""
  return f'[{page}]({page})' if page_dir == Path('docs') else f'[docs/{page}](docs/{page})'
