"""What a checkpoint records of its config, and how a trained state comes back for use.

`checkpoint_meta` builds the meta record every experiment saves with its checkpoints; what a
resume may change is checked against it (`checkpoint_integrity.check_compatible`). Finding a
checkpoint is `Checkpointer.find`, for every mode: `restore_trained` is its use for eval,
sampling and prediction, `refuse_incompatible` its check alone, for runs that must refuse a workdir
before they write files its checkpoint depends on.
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import ml_collections

from aml2_jax.errors import UserError
from aml2_jax.training.checkpointing import Checkpointer

# Model fields that change speed, never results: a checkpoint fits whatever they are.
SPEED_OPTIONS = ('ops', 'unroll')


def checkpoint_meta(config: ml_collections.ConfigDict, experiment: str, *,
                    schedule_spans_run: bool = False, new_model_fields: dict | None = None) -> dict:
  """The meta record of a checkpoint: the experiment, the model (speed options aside), every
  optimizer setting and `num_epochs`; an experiment adds what else must match (vocabulary, data).

  Args:
    config: the run's config.
    experiment: the experiment's name (a CAS classifier is another experiment than the judge).
    schedule_spans_run: the learning-rate schedule spans `num_epochs` (e.g. a cosine to 0), so
      the run's length is an optimizer setting (`optim.schedule_epochs`): a resume with another
      would bend the schedule mid-run.
    new_model_fields: {field: value} of model fields left out at that value, so checkpoints made
      before the field existed still fit.
  """
  new = new_model_fields or {}
  model = {k: v for k, v in config.model.to_dict().items()
           if k not in SPEED_OPTIONS and not (k in new and v == new[k])}
  optim = config.optim.to_dict()
  if schedule_spans_run:
    optim['schedule_epochs'] = config.num_epochs
  return {'experiment': experiment, 'model': model, 'optim': optim,
          'num_epochs': config.num_epochs}


@dataclasses.dataclass(frozen=True)
class Restored:
  """A train state restored from a workdir, with the step and the meta record it was saved with."""
  state: Any
  step: int
  meta: dict


def restore_trained(workdir: Path, make_state: Callable[[], Any], meta: dict, *,
                    train_command: str, best_metric: str = '',
                    meta_keys: Sequence[str] | None = None) -> Restored:
  """The trained state of a workdir, for eval, sampling and prediction (`Checkpointer.find`).

  The newest intact checkpoint, or with `best_metric` the best one by it, whose meta record fits
  `meta` for use (on `meta_keys`, default all; the optimizer and `num_epochs` are not checked),
  restored into the shapes of `make_state()` (only traced) on this process's first device.

  Args:
    workdir: the run directory.
    make_state: builds a fresh train state of this config (never run, only traced for shapes).
    meta: what the checkpoint must have been made for (`checkpoint_meta`).
    train_command: the command the error suggests when there is no intact checkpoint.
    best_metric: the metric that picked the best checkpoint during training, or ''.
    meta_keys: the meta entries that must agree (e.g. the model and vocabulary only).
  """
  directory = Path(workdir) / 'checkpoints'
  retrain = f'{train_command} --workdir={workdir}'
  if not directory.is_dir():  # Look first: the manager would create the folder.
    raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
  ckpt = Checkpointer(directory, best_metric=best_metric)
  try:
    had_steps = bool(ckpt.all_steps())
    found = ckpt.find(meta, resume=False, keys=meta_keys, best=bool(best_metric),
                      templates={'state': jax.eval_shape(make_state)})
  finally:
    ckpt.close()
  if found is None and had_steps:
    raise UserError(f'no intact checkpoint is left in {directory} (the damaged ones are kept '
                    f'aside); retrain: {retrain}')
  if found is None:
    raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
  return Restored(found.items['state'], found.step, found.meta)


def refuse_incompatible(workdir: Path, meta: dict) -> int | None:
  """The step that training in `workdir` resumes from, or None; refuses (`UserError`) a
  checkpoint made for something else than `meta` (`Checkpointer.find`, the resume rule)."""
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return None
  ckpt = Checkpointer(directory)
  try:
    found = ckpt.find(meta)
  finally:
    ckpt.close()
  return None if found is None else found.step
