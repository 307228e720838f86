"""Training curves as a PNG in the workdir, read from `metrics.jsonl`."""

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use('Agg')  # No display on servers and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from aml2_jax import jsonio  # pylint: disable=g-import-not-at-top
from aml2_jax.runtime import storage  # pylint: disable=g-import-not-at-top


def plot_curves(workdir: Path, names: Sequence[str], path: Path | None = None) -> Path:
  """Plots each metric in `names` against the epoch, one panel each; returns the PNG path.

  An epoch logged twice (a run killed after logging it and resumed before it) is drawn once,
  with its last record; the PNG is replaced atomically.
  """
  records = jsonio.read_jsonl(Path(workdir) / 'metrics.jsonl')
  by_epoch = {r['epoch']: r for r in records if 'epoch' in r}
  records = [by_epoch[epoch] for epoch in sorted(by_epoch)]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
  for ax, name in zip(axes[0], names):
    points = [(r['epoch'], r[name]) for r in records if name in r]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker='.')
    ax.set_xlabel('epoch')
    ax.set_title(name)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  path = Path(path or Path(workdir) / 'curves.png')
  try:
    storage.atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100, format='png'), '--workdir')
  finally:
    plt.close(fig)
  return path
