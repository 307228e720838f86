"""Labelled PNG grids of 28x28 images (one row per class)."""

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from aml2_jax.runtime import storage


def grid_image(images: np.ndarray) -> np.ndarray:
  """Tiles uint8 images [rows, cols, h, w] into one [rows*h, cols*w] image (1 px gaps)."""
  rows, cols, h, w = images.shape
  canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 255, np.uint8)
  for r in range(rows):
    for c in range(cols):
      canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[r, c]
  return canvas


def save_labelled_grid(images: np.ndarray, row_names: Sequence[str], path: Path,
                       scale: int = 2, margin: int = 90, where: str = '--workdir') -> None:
  """Writes the tiled images, scaled up, with each row's name in a left margin (as PNG,
  atomically; a disk fault is a `storage.StorageError` whose fix names `where`)."""
  tiles = Image.fromarray(grid_image(images))
  tiles = tiles.resize((tiles.width * scale, tiles.height * scale), Image.NEAREST)
  canvas = Image.new('L', (tiles.width + margin, tiles.height), 255)
  canvas.paste(tiles, (margin, 0))
  draw = ImageDraw.Draw(canvas)
  row_height = tiles.height / len(row_names)
  for r, name in enumerate(row_names):
    draw.text((4, int((r + 0.5) * row_height) - 6), name, fill=0)
  with storage.writing(Path(path).parent, where):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
  storage.atomic_save(path, lambda tmp: canvas.save(tmp, format='PNG'), where)
