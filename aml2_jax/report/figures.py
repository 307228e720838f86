"""The figures of the docs, drawn from `results/` into `docs/figures/` (matplotlib, Agg).

Each figure names the docs page it belongs to and the inputs it needs; a figure whose inputs are
missing is neither drawn nor linked. matplotlib is imported only to draw, so that `--check`
(which only asks which figures exist) stays fast.
"""

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from aml2_jax.report import sources

FIGURES_DIR = Path('docs') / 'figures'
SPAM_CURVES = ('train_loss', 'val_loss', 'val_accuracy')
CGAN_CURVES = ('train_d_loss', 'train_g_loss', 'train_d_real', 'train_d_fake',
               'val_conditional_accuracy', 'val_fid')
JUDGE_CURVES = ('train_loss', 'val_accuracy', 'test_accuracy')
# Fashion-MNIST's label order (results.json lists the classes alphabetically).
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
           'Bag', 'Ankle boot')
IMPLEMENTATIONS = {'aml2_jax': 'aml2_jax', 'torch': 'PyTorch eager',
                   'torch_compile': 'torch.compile', 'keras_jax': 'Keras 3 (JAX)'}


@dataclasses.dataclass(frozen=True)
class Figure:
  """A PNG of `docs/figures/`: `series(root)` gives its inputs (empty: not drawn)."""
  name: str
  page: str  # The docs page that links it ('spam', 'textgen', 'cgan', 'performance').
  title: str
  series: Callable[[Path], dict]
  draw: Callable[[dict, Path], None]


# ---------------------------------------------------------------- inputs

def _spam_series(root: Path) -> dict:
  """{run key: [per-seed epoch records]} of the spam runs with per-seed metrics."""
  found = {}
  for key in sources.SPAM_RUNS:
    seeds = sorted((Path(root) / 'results' / key).glob('seed_*/metrics.jsonl'))
    per_seed = [sources.by_epoch(sources.read_jsonl(p)) for p in seeds]
    if any(per_seed):
      found[key] = per_seed
  return found


def _curves_series(keys, names) -> Callable[[Path], dict]:
  """{run key: epoch records} of the runs in `keys` whose metrics.jsonl logs one of `names`."""

  def series(root: Path) -> dict:
    found = {}
    for key in keys:
      records = sources.by_epoch(sources.read_jsonl(Path(root) / 'results' / key /
                                                    'metrics.jsonl'))
      if any(name in r for r in records for name in names):
        found[key] = records
    return found

  return series


def _textgen_series(root: Path) -> dict:
  found = _curves_series(sources.TEXTGEN_RUNS, ('val_bpc',))(root)
  baselines = sources.load_run(root, sources.TEXTGEN_BASELINES).results or {}
  if found and isinstance(baselines.get('kneser_ney_5'), dict):
    found['baseline'] = baselines['kneser_ney_5'].get('val_bpc')
  return found


def per_class(run: sources.Run) -> dict | None:
  """The run's per-class conditional accuracy on the test set, in label order (or None)."""
  found = run.get('test_per_class_accuracy', 'per_class_accuracy')  # Older runs: unprefixed.
  if not found:
    return None
  return {c: found[c] for c in sorted(found, key=lambda c: (c not in CLASSES, CLASSES.index(c)
                                                            if c in CLASSES else 0, c))}


def _per_class_series(root: Path) -> dict:
  runs = [sources.load_run(root, key) for key in sources.CGAN_RUNS]
  return {run.key: per_class(run) for run in runs if per_class(run)}


def last_sample_grid(root: Path, key: str) -> Path | None:
  """The last epoch's sample grid published with a cGAN run, if any."""
  grids = sorted((Path(root) / 'results' / key / 'samples').glob('epoch_*.png'))
  return grids[-1] if grids else None


def _samples_series(key: str) -> Callable[[Path], dict]:
  return lambda root: {'grid': grid} if (grid := last_sample_grid(root, key)) else {}


def _bench_series(root: Path) -> dict:
  bench = sources.load_json(Path(root) / 'results' / sources.BENCH_PEERS) or {}
  return bench.get('models') or {}


# ---------------------------------------------------------------- drawing

def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # No display on servers and CI.
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: Path) -> None:
  plt = _plt()
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  # No software/date metadata: the same results give the same bytes.
  fig.savefig(path, dpi=100, format='png', metadata={'Software': None})
  plt.close(fig)


def _panels(names, series: dict[str, list[dict]], path: Path) -> None:
  """One panel per metric in `names` (those logged), one line per run, against the epoch."""
  names = [n for n in names if any(n in r for records in series.values() for r in records)]
  fig, axes = _plt().subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
  for ax, name in zip(axes[0], names):
    for key, records in series.items():
      points = [(r['epoch'], r[name]) for r in records if name in r]
      if points:
        ax.plot(*zip(*points), marker='.', label=key.split('/')[-1])
    ax.set(xlabel='epoch', title=name)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize='small')
  _save(fig, path)


def _draw_spam(series: dict, path: Path) -> None:
  """Mean over seeds of each metric per epoch."""
  means = {}
  for key, per_seed in series.items():
    epochs = sorted({r['epoch'] for records in per_seed for r in records})
    means[key] = []
    for epoch in epochs:
      rows = [r for records in per_seed for r in records if r['epoch'] == epoch]
      means[key].append({'epoch': epoch, **{n: float(np.mean([r[n] for r in rows if n in r]))
                                            for n in SPAM_CURVES if any(n in r for r in rows)}})
  _panels(SPAM_CURVES, means, path)


def _draw_textgen(series: dict, path: Path) -> None:
  plt = _plt()
  baseline = series.pop('baseline', None)
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for key, records in series.items():
    points = [(r['epoch'], r['val_bpc']) for r in records if 'val_bpc' in r]
    ax.plot(*zip(*points), marker='.', label=key.split('/')[-1])
  if isinstance(baseline, (int, float)):
    ax.axhline(baseline, color='gray', linestyle='--', label='5-gram Kneser-Ney')
  ax.set(xlabel='epoch', ylabel='validation bits per character',
         title='Text generator: validation bits/char')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  _save(fig, path)


def _draw_per_class(series: dict, path: Path) -> None:
  plt = _plt()
  classes = list(next(iter(series.values())))
  fig, ax = plt.subplots(figsize=(9, 3.8))
  width = 0.8 / len(series)
  for i, (key, accuracy) in enumerate(series.items()):
    x = np.arange(len(classes)) + (i - (len(series) - 1) / 2) * width
    ax.bar(x, [accuracy.get(c, 0.0) for c in classes], width, label=key.split('/')[-1])
  ax.set_xticks(np.arange(len(classes)), classes, rotation=30, ha='right')
  ax.set(ylabel='conditional accuracy', ylim=(0, 1),
         title='cGAN: share of generated images the judge assigns to their class')
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize='small')
  _save(fig, path)


def _draw_bench(models: dict, path: Path) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(9, 3.8))
  names = list(models)
  width = 0.8 / len(IMPLEMENTATIONS)
  for i, (impl, label) in enumerate(IMPLEMENTATIONS.items()):
    x = np.arange(len(names)) + (i - (len(IMPLEMENTATIONS) - 1) / 2) * width
    ax.bar(x, [(models[m].get(impl) or {}).get('samples_per_s', 0.0) for m in names], width,
           label=label)
  ax.set_xticks(np.arange(len(names)), names)
  ax.set(ylabel='training samples / s (log)', yscale='log', title='Training throughput')
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize='small')
  _save(fig, path)


def _copy_grid(series: dict, path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(series['grid'], path)


FIGURES = (
    Figure('spam_curves.png', 'spam', 'Spam classifier: training curves, mean over seeds',
           _spam_series, _draw_spam),
    Figure('textgen_val_bpc.png', 'textgen', 'Text generator: validation bits/char per epoch',
           _textgen_series, _draw_textgen),
    Figure('cgan_curves.png', 'cgan', 'cGAN: training curves',
           _curves_series(sources.CGAN_RUNS, CGAN_CURVES),
           lambda series, path: _panels(CGAN_CURVES, series, path)),
    Figure('cgan_per_class.png', 'cgan', 'cGAN: conditional accuracy per class (test)',
           _per_class_series, _draw_per_class),
    Figure('cgan_samples_default.png', 'cgan', 'cGAN samples, default recipe, last epoch '
           '(a row per class)', _samples_series('cgan/default'), _copy_grid),
    Figure('cgan_samples_study_recipe.png', 'cgan', "cGAN samples, the study's recipe, last "
           'epoch (a row per class)', _samples_series('cgan/study_recipe'), _copy_grid),
    Figure('judge_curves.png', 'cgan', 'The judge (Fashion-MNIST classifier): training curves',
           _curves_series((sources.JUDGE,), JUDGE_CURVES),
           lambda series, path: _panels(JUDGE_CURVES, series, path)),
    Figure('bench_samples_per_s.png', 'performance', 'Training throughput against the peers',
           _bench_series, _draw_bench),
)


def available(root: Path, page: str) -> list[Figure]:
  """The figures of `page` whose inputs exist under `root`/results."""
  return [f for f in FIGURES if f.page == page and f.series(root)]


def draw_all(root: Path, out_dir: Path | None = None) -> list[Path]:
  """Draws every figure whose inputs exist; returns the paths written."""
  out_dir = Path(out_dir or Path(root) / FIGURES_DIR)
  written = []
  for figure in FIGURES:
    series = figure.series(root)
    if series:
      figure.draw(series, out_dir / figure.name)
      written.append(out_dir / figure.name)
  return written
