"""What a checkpoint records of its config, and how a trained state comes back for use (both
through `Checkpointer.find`: `restore_trained` for eval, sampling and prediction,
`refuse_incompatible` for a run that must refuse a workdir before it writes there)."""

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import ml_collections

from aml2_jax.errors import UserError
from aml2_jax.training.checkpointing import Checkpointer, Found

# Model fields that change speed, never results: a checkpoint fits whatever they are.
SPEED_OPTIONS = ('ops', 'unroll')


def checkpoint_meta(config: ml_collections.ConfigDict, experiment: str, *,
                    schedule_spans_run: bool = False, new_model_fields: dict | None = None) -> dict:
  """The meta record of a checkpoint: the experiment, the model (speed options aside), every
  optimizer setting and `num_epochs`; an experiment adds what else must match (vocabulary, data).

  `schedule_spans_run`: the schedule spans `num_epochs` (a cosine), so the run's length is an
  optimizer setting too. `new_model_fields`: {field: value} left out at that value, so that
  checkpoints made before the field existed still fit.
  """
  new = new_model_fields or {}
  model = {k: v for k, v in config.model.to_dict().items()
           if k not in SPEED_OPTIONS and not (k in new and v == new[k])}
  optim = config.optim.to_dict()
  if schedule_spans_run:
    optim['schedule_epochs'] = config.num_epochs
  return {'experiment': experiment, 'model': model, 'optim': optim,
          'num_epochs': config.num_epochs}


def restore_trained(workdir: Path, make_state: Callable[[], Any], meta: dict, *,
                    train_command: str, best_metric: str = '',
                    meta_keys: Sequence[str] | None = None) -> Found:
  """The newest (with `best_metric`: the best) intact state of `workdir` whose meta fits `meta`
  on `meta_keys` (default all) for use, restored into the shapes of `make_state()` (traced only)
  on this process's first device; without one, a `UserError` suggesting `train_command`."""
  directory = Path(workdir) / 'checkpoints'
  retrain = f'{train_command} --workdir={workdir}'
  if not directory.is_dir():  # Look first: the manager would create the folder.
    raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
  with contextlib.closing(Checkpointer(directory, best_metric=best_metric)) as ckpt:
    had_steps = bool(ckpt.all_steps())
    found = ckpt.find(meta, resume=False, keys=meta_keys, best=bool(best_metric),
                      templates={'state': jax.eval_shape(make_state)})
  if found is None and had_steps:
    raise UserError(f'no intact checkpoint is left in {directory} (the damaged ones are kept '
                    f'aside); retrain: {retrain}')
  if found is None:
    raise UserError(f'no checkpoint in {workdir}; train first: {retrain}')
  return found


def refuse_incompatible(workdir: Path, meta: dict) -> int | None:
  """The step that training in `workdir` resumes from, or None; a `UserError` for a checkpoint
  made for something else than `meta` (the resume rule)."""
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return None
  with contextlib.closing(Checkpointer(directory)) as ckpt:
    found = ckpt.find(meta)
  return None if found is None else found.step
