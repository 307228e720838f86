"""The one way a trained state comes back: for resuming checks, eval, sampling and prediction.

`restore_trained` restores the best (or latest) intact checkpoint of a workdir onto the current
devices, after checking that it was made for this config; `refuse_incompatible` is the check
alone, for runs that must refuse before they write files a checkpoint depends on.
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import jax

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.training.checkpoint_integrity import DAMAGED_SUFFIX, DamagedCheckpoint
from aml2_jax.training.checkpointing import Checkpointer, check_compatible


@dataclasses.dataclass(frozen=True)
class Restored:
  """A train state restored from a workdir, with the step and the meta record it was saved with."""
  state: Any
  step: int
  meta: dict


def restore_trained(workdir: Path, make_state: Callable[[], Any], meta: dict, *,
                    train_command: str, best_metric: str = '',
                    meta_keys: Sequence[str] | None = None) -> Restored:
  """The one way a trained state comes back for eval, sampling and prediction.

  Restores the best checkpoint by `best_metric` (the latest when '' or when none has metrics) of
  `<workdir>/checkpoints` into the shapes of `make_state()` (only traced) placed on the current
  devices, after verifying its files and checking that its meta record agrees with `meta` on
  `meta_keys` (default: all). A damaged latest checkpoint falls back to the newest intact one
  (said on stderr; nothing is moved, the workdir may be read-only); a damaged best one, or no
  intact one, is refused.

  Args:
    workdir: the run directory.
    make_state: builds a fresh train state of this config (never run, only traced for shapes).
    meta: what the checkpoint must have been made for (see `check_compatible`).
    train_command: the command the error suggests when there is no checkpoint yet.
    best_metric: the metric that picked the best checkpoint during training, or ''.
    meta_keys: the meta entries that must agree (e.g. the model and vocabulary only).
  """
  directory = Path(workdir) / 'checkpoints'
  retrain = f'{train_command} --workdir={workdir}'
  if not directory.is_dir():  # Look first: the manager would create the folder.
    raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
  ckpt = Checkpointer(directory, best_metric=best_metric)
  try:
    templates = {'state': jax.eval_shape(make_state)}
    best = ckpt.best_step() if best_metric else None
    if best is not None:
      try:
        restored, saved = ckpt.load(best, templates, meta, meta_keys=meta_keys)
      except DamagedCheckpoint as e:
        raise DamagedCheckpoint(
            directory, best, f'{e.reason}; it is the best one by {best_metric}',
            f'rename it to {best}{DAMAGED_SUFFIX} to use the next best one, or retrain: '
            f'{retrain}') from e
      return Restored(restored['state'], best, saved)
    steps = list(reversed(ckpt.all_steps()))
    if not steps:
      raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
    for step in steps[:-1]:
      try:
        restored, saved = ckpt.load(step, templates, meta, meta_keys=meta_keys)
        return Restored(restored['state'], step, saved)
      except DamagedCheckpoint as e:
        console.warn(f'warning: {e}; using the previous checkpoint (training moves it aside).')
    try:
      restored, saved = ckpt.load(steps[-1], templates, meta, meta_keys=meta_keys)
    except DamagedCheckpoint as e:
      raise DamagedCheckpoint(directory, steps[-1], e.reason,
                              ('no earlier one is intact' if len(steps) > 1 else
                               'it is the only one') + f'; retrain: {retrain}') from e
    return Restored(restored['state'], steps[-1], saved)
  finally:
    ckpt.close()


def refuse_incompatible(workdir: Path, meta: dict) -> int | None:
  """Refuses a workdir whose newest intact checkpoint was made for something else than `meta`.

  Resuming checks this too; a run calls it first when it writes files (a vocabulary) that the
  existing checkpoint depends on. Returns that step (the one training resumes from), or None
  when there is none. Damaged steps are skipped here; training moves them aside and says so.
  """
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return None
  ckpt = Checkpointer(directory)
  try:
    for step in reversed(ckpt.all_steps()):
      if ckpt.verify(step) is None:
        try:
          saved = ckpt.read_meta(step)
        except DamagedCheckpoint:
          continue
        check_compatible(saved, meta, workdir)
        return step
    return None
  finally:
    ckpt.close()
