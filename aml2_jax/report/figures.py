"""The docs' figures (`[[figures]]` of tables.toml), drawn into docs/figures/ (matplotlib, Agg);
one whose inputs are missing is neither drawn nor linked. matplotlib is imported only to draw."""

import collections
import shutil
from pathlib import Path

import numpy as np

from aml2_jax.report import tables
from aml2_jax.report.render import fill
from aml2_jax.report.runs import NOT_RUN, Results

Figure = collections.namedtuple('Figure', 'name page title draw')  # draw(path) writes the PNG.


def _plot(path: Path, names: list, size: tuple, draw, axes: dict) -> None:
  """`draw(ax, name)` for a panel per name, side by side; `axes` labels the first panel."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # No display on servers and CI.
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, row = plt.subplots(1, len(names), figsize=size, squeeze=False)
  for ax, name in zip(row[0], names):
    draw(ax, name)
    ax.grid(alpha=0.3)
  row[0][0].set(**axes)
  row[0][0].legend(fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=100, format='png', metadata={'Software': None})  # Same data, same bytes.
  plt.close(fig)


def _draw(decl: dict, results: Results, series: dict):
  """`draw(path)` of curves (a panel per metric, a line per run) or of bars; None: nothing."""
  axes = dict(decl.get('axes', {}))
  if 'bars' in decl:
    groups = tables.TOML.get(decl.get('groups')) or list(next(iter(series.values()), {}))
    width = 0.8 / max(len(series), 1)

    def bars(ax, _) -> None:
      for i, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width,
               [values.get(g, 0.0) for g in groups], width, label=label)
      turn = len(groups) > 6  # Long names.
      ax.set_xticks(np.arange(len(groups)), groups, rotation=30 * turn,
                    ha='right' if turn else 'center')
    return (lambda path: _plot(path, ['bars'], (9, 3.8), bars, axes)) if series else None
  names = [n for n in decl['curves'] if any(n in r for rs in series.values() for r in rs)]
  title, line = axes.pop('title', None), decl.get('line')
  if line and (found := tables.rows(results, line[0])):
    get = tables.getter(*found[0])
    line = (get(line[1]), fill(line[2], get))

  def curves(ax, name: str) -> None:
    for label, records in series.items():
      points = [(r['epoch'], r[name]) for r in records if name in r]
      if points:
        ax.plot(*zip(*points), marker='.', label=label)
    if line:
      ax.axhline(line[0], color='gray', linestyle='--', label=line[1])
    ax.set(xlabel='epoch', title=title or name)
  size = (4 * len(names), 3.2) if len(names) > 1 else (6.5, 4)
  return (lambda path: _plot(path, names, size, curves, axes)) if names else None


def figures(results: Results) -> list[Figure]:
  """Every figure of tables.toml whose inputs exist."""
  found = []
  for decl in tables.FIGURES:
    rows = [(run, tables.getter(run, extra)) for run, extra in tables.rows(results, decl['runs'])]
    if 'copy' in decl:  # The last file matching, per run.
      found += [Figure(fill(decl['name'], get), decl['page'], fill(decl['title'], get),
                       lambda path, src=files[-1]: shutil.copyfile(src, path))
                for run, get in rows if (files := sorted(run.path.glob(decl['copy'])))]
      continue
    series = {fill(decl['legend'], get): run.metrics() if 'curves' in decl else get(decl['bars'])
              for run, get in rows}
    draw = _draw(decl, results, {label: values for label, values in series.items() if values})
    found += [Figure(decl['name'], decl['page'], decl['title'], draw)] if draw else []
  return found


def draw_all(results: Results, out_dir: Path | None = None) -> list[Path]:
  """Draws every figure whose inputs exist into `out_dir` (docs/figures/); returns the paths."""
  out_dir = Path(out_dir or results.root / 'docs' / 'figures')
  out_dir.mkdir(parents=True, exist_ok=True)
  for figure in (drawn := figures(results)):
    figure.draw(out_dir / figure.name)
  return [out_dir / f.name for f in drawn]


RENDERERS = {  # `<page>_figures`: the Markdown images of the page's figures.
    f'{page}_figures': lambda results, page_dir, page=page: '\n\n'.join(
        f'![{f.title}]({"" if page_dir == Path("docs") else "docs/"}figures/{f.name})'
        for f in figures(results) if f.page == page) or f'Figures: {NOT_RUN}.'
    for page in {f['page'] for f in tables.FIGURES}}
