"""Where metrics go: TensorBoard event files (tensorboardX, no TensorFlow needed) and metrics.jsonl.

One `MetricLogger` per run, in its workdir. Every scalar write also appends one JSON line
`{"step": ..., "epoch": ..., name: value, ...}` so that results can be read without TensorBoard.
"""

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import tqdm
from tensorboardX import SummaryWriter


class MetricLogger:
  """Writes scalars, images and text for one run (TensorBoard + `metrics.jsonl`)."""

  def __init__(self, workdir: Path):
    self.workdir = Path(workdir)
    self.writer = SummaryWriter(str(self.workdir / 'tensorboard'))
    self.jsonl = open(self.workdir / 'metrics.jsonl', 'a', encoding='utf-8')

  def scalars(self, step: int, values: Mapping[str, float], **context) -> None:
    """Logs `values` at `step`; `context` (e.g. epoch=3) goes only into the JSON line."""
    values = {k: float(v) for k, v in values.items()}
    for name, value in values.items():
      self.writer.add_scalar(name, value, step)
    self.jsonl.write(json.dumps({'step': int(step), **context, **values}) + '\n')
    self.jsonl.flush()

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs a grey uint8 image [height, width]."""
    self.writer.add_image(name, image[None], step, dataformats='CHW')

  def text(self, step: int, name: str, text: str) -> None:
    self.writer.add_text(name, text, step)

  def close(self) -> None:
    self.writer.close()
    self.jsonl.close()


def progress_bar(total: int, desc: str, initial: int = 0, unit: str = 'step') -> tqdm.tqdm:
  """A progress bar with rate and ETA (on stderr; quiet when stderr is not a terminal in CI)."""
  return tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                   leave=True, mininterval=1.0)


def write_json(path: Path, record: Mapping) -> None:
  """Writes a JSON record atomically (temp file, then rename), so a crash never leaves half a file."""
  path = Path(path)
  tmp = path.with_suffix(path.suffix + '.tmp')
  tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + '\n', encoding='utf-8')
  tmp.replace(path)
