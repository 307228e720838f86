"""Where metrics go (TensorBoard events and metrics.jsonl in the workdir, results JSON) and what
the console shows of them while a run trains (a progress bar, a line per epoch)."""

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import tqdm

from aml2_jax import console, jsonio
from aml2_jax.runtime import faults, storage


def _import_tensorboardx():
  """tensorboardX without the torch import its package makes when torch is installed (1-2 s of
  every start; only torch tensors need it)."""
  blocked = 'torch' not in sys.modules
  if blocked:
    sys.modules['torch'] = None  # `import torch` raises ImportError: tensorboardX goes without.
  try:
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    from tensorboardX.event_file_writer import EventsWriter  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  finally:
    if blocked:
      del sys.modules['torch']  # Whoever needs torch later imports it as usual.
  return summary, EventsWriter, event_pb2


tb_summary, EventsWriter, event_pb2 = _import_tensorboardx()


class MetricLogger:
  """Writes scalars, images and text of one run to TensorBoard and `metrics.jsonl`.

  Each scalar write also appends a line `{"step": ..., "epoch": ..., name: value}`. Only
  process 0 writes; a disk fault raises `storage.StorageError`.
  """

  def __init__(self, workdir: Path):
    self.path = Path(workdir) / 'metrics.jsonl'
    self.events_dir = Path(workdir) / 'tensorboard'
    self.jsonl = self.events = None
    self.enabled = console.is_main_process()
    if not self.enabled:
      return
    try:
      with storage.writing(self.path, '--workdir'):
        dropped = storage.repair_jsonl(self.path)
        if dropped:
          console.warn(f'note: dropped the torn last line of {self.path} ({dropped} bytes, a '
                       'write cut short); its epoch is logged again when it reruns.')
        self.jsonl = open(self.path, 'a', encoding='utf-8')
      with storage.writing(self.events_dir, '--workdir'):
        self.events_dir.mkdir(parents=True, exist_ok=True)
        # Synchronous: a full disk raises here, where tensorboardX's background writer would only
        # print a traceback and then block.
        self.events = EventsWriter(str(self.events_dir / 'events'), f'.{os.getpid()}')
    except storage.StorageError:
      self.close()
      raise

  def _add_event(self, step: int, summary) -> None:
    with storage.writing(self.events_dir, '--workdir'):
      self.events.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                              summary=summary))
      self.events.flush()

  def scalars(self, step: int, values: Mapping[str, float], **context) -> None:
    """Logs `values` at `step`; `context` (e.g. epoch=3) goes only into the JSON line."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    line = json.dumps({'step': int(step), **context, **values}) + '\n'
    for name, value in values.items():
      self._add_event(step, tb_summary.scalar(name, value))
    with storage.writing(self.path, '--workdir'):
      if faults.crash_armed(f'write:{self.path}'):  # Tests: a kill in the middle of the line.
        self.jsonl.write(line[:len(line) // 2])
        self.jsonl.flush()
        faults.crash_point(f'write:{self.path}')
      self.jsonl.write(line)
      self.jsonl.flush()

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs a grey uint8 image [height, width]."""
    if self.enabled:
      self._add_event(step, tb_summary.image(name, image[None], dataformats='CHW'))

  def text(self, step: int, name: str, text: str) -> None:
    if self.enabled:
      self._add_event(step, tb_summary.text(name, text))

  def close(self) -> None:
    """Closes both files; a write error here is moot (the run failed, or all was flushed)."""
    for closing in (self.events, self.jsonl):
      if closing is not None:
        with contextlib.suppress(OSError):
          closing.close()


def write_json(path: Path, record: Mapping) -> None:
  """`jsonio.write_json` on process 0 only, a disk fault as a `storage.StorageError`."""
  if console.is_main_process():
    with storage.writing(path, '--workdir'):
      jsonio.write_json(path, record)


# Bars redraw a line with carriage returns: live progress on a terminal, noise in a log file, CI
# or a pipe, where the per-epoch lines speak alone. None: tqdm asks whether stderr is a terminal;
# tests set True or False.
SHOW_BARS: bool | None = None


def progress_bar(total: int, desc: str, initial: int = 0, unit: str = 'step') -> tqdm.tqdm:
  """A progress bar with rate and ETA on stderr, when it is a terminal (process 0 only)."""
  show = SHOW_BARS if console.is_main_process() else False
  return tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                   leave=True, mininterval=1.0, disable=None if show is None else not show)


def figure(value) -> str:
  """A metric in 4 significant digits; a seed batch's values [seeds] by their mean."""
  return f'{float(np.mean(value)):.4g}'


def loss_first(names) -> list[str]:
  """Metric names in a stable order: the losses, then the rest, each alphabetical."""
  return sorted(names, key=lambda name: ('loss' not in name, name))


def show_running(bar: tqdm.tqdm, last: Mapping) -> None:
  """Shows the losses of the last step read back in `bar`'s postfix, at its next refresh."""
  if not bar.disable:
    names = [k for k in loss_first(last) if 'loss' in k] or loss_first(last)
    bar.set_postfix({k: figure(last[k]) for k in names}, refresh=False)


def experiment_name(meta: Mapping) -> str:
  """The experiment a task's checkpoint meta names (a seed batch's: its first seed's), or ''."""
  return meta.get('experiment') or next(iter(meta.get('seeds') or [{}])).get('experiment', '')


def epoch_line(name: str, epoch: int, num_epochs: int, train: Mapping, held_out: Mapping,
               train_s: float, eval_s: float) -> str:
  """'cgan epoch 3/30  d_loss 1.234  g_loss 0.8761  val_fid 45.67  9.8 s + eval 1.2 s'.

  Train means with losses first, then `held_out` in its order; a seed batch's values [seeds]
  are shown by their means, which the line says.
  """
  figures = [f'{k} {figure(train[k])}' for k in loss_first(train)]
  figures += [f'{k} {figure(v)}' for k, v in held_out.items()]
  seconds = f'{train_s:.1f} s' + (f' + eval {eval_s:.1f} s' if held_out else '')
  seeds = {np.size(v) for v in (*train.values(), *held_out.values())} - {1}
  mean = f'  (means over {seeds.pop()} seeds)' if seeds else ''
  head = f'{name} epoch' if name else 'epoch'
  return '  '.join([f'{head} {epoch}/{num_epochs}', *figures, seconds]) + mean
