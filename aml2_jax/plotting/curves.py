"""Training curves as a PNG in the workdir, read from `metrics.jsonl`."""

import json
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use('Agg')  # No display on servers and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def plot_curves(workdir: Path, names: Sequence[str], path: Path | None = None) -> Path:
  """Plots each metric in `names` against the epoch, one panel each; returns the PNG path."""
  records = [json.loads(line) for line in (Path(workdir) / 'metrics.jsonl').read_text().splitlines()]
  records = [r for r in records if 'epoch' in r]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
  for ax, name in zip(axes[0], names):
    points = [(r['epoch'], r[name]) for r in records if name in r]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker='.')
    ax.set_xlabel('epoch')
    ax.set_title(name)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  path = path or Path(workdir) / 'curves.png'
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
