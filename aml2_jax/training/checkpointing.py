"""Saving and restoring train states with orbax, plus what makes a checkpoint compatible.

A checkpoint holds the whole train state (params, optimizer and schedule state, step, RNG key
data, the running sums of the current epoch's metrics) and a JSON `meta` record: the experiment,
the model config and anything else (vocabulary digest) that must match for a restore to make sense.
Orbax writes each step to a temporary directory and renames it when complete, so a crash during a
save leaves the previous checkpoint restorable.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
from orbax.checkpoint import checkpoint_managers as policies

from aml2_jax.errors import UserError
from aml2_jax.training import sharding


class Checkpointer:
  """An orbax `CheckpointManager` for one workdir: keeps the latest K and the best one.

  Args:
    directory: where step directories go (`<workdir>/checkpoints`).
    keep: how many of the latest checkpoints to keep.
    best_metric: the metric (passed to `save`) that picks the best checkpoint; '' = none.
    best_mode: 'min' or 'max' for `best_metric`.
  """

  def __init__(self, directory: Path, keep: int = 2, best_metric: str = '', best_mode: str = 'min'):
    self.directory = Path(directory).absolute()
    self.best_metric = best_metric
    policy = [policies.LatestN(n=keep)]
    best_fn = None
    if best_metric:
      best_fn = lambda metrics: metrics[best_metric]
      policy.append(policies.BestN(get_metric_fn=best_fn, reverse=best_mode == 'min', n=1,
                                   keep_checkpoints_without_metrics=False))
    # best_fn must be set for orbax to write the metrics at all; the policy decides what stays.
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn, best_mode=best_mode, create=True,
        preservation_policy=policies.AnyPreservationPolicy(policy))
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """The best step by `best_metric`, else the latest."""
    return self.manager.best_step()

  def save(self, step: int, items: dict[str, Any], meta: dict, metrics: dict | None = None) -> None:
    """Saves pytrees `items` (by name) and `meta` at `step` (async; `wait` or `close` to finish)."""
    args = ocp.args.Composite(meta=ocp.args.JsonSave(meta),
                              **{k: ocp.args.StandardSave(v) for k, v in items.items()})
    metrics = {k: float(v) for k, v in metrics.items()} if metrics else None
    self.manager.save(step, args=args, metrics=metrics, force=True)

  def read_meta(self, step: int) -> dict:
    """The JSON record saved with `step`."""
    try:
      return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except (OSError, ValueError, KeyError) as e:
      raise UserError(f'checkpoint {self.directory / str(step)} has no readable meta record '
                      f'({e}); delete that step directory to fall back to an earlier one.') from e

  def restore(self, step: int, templates: dict[str, Any],
              mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
    """Restores the named items saved at `step` into the structures of `templates`.

    A template is a pytree of arrays or `jax.ShapeDtypeStruct`s; the restored arrays are
    replicated over `mesh` (default: this process's first device), whatever layout and device
    count they were saved with.
    """
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(restore_template(v, mesh))
                                 for k, v in templates.items()})
    try:
      restored = self.manager.restore(step, args=args)
      return {k: restored[k] for k in templates}
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'checkpoint {self.directory / str(step)} does not fit this config\'s '
                      f'model ({str(e).splitlines()[0][:200]}); use another --workdir.') from e

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def check_compatible(saved: dict, current: dict, workdir: Path) -> None:
  """Refuses to resume or restore when what the checkpoint was made for differs from now."""
  current = json.loads(json.dumps(current))  # As saved: tuples become lists.
  for key in sorted(set(saved) | set(current)):
    if saved.get(key) != current.get(key):
      raise UserError(
          f'the checkpoint in {workdir} was made with a different {key} '
          f'({_short(saved.get(key))} there, {_short(current.get(key))} now); '
          f'use another --workdir, or the config that made it.')


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
  devices, after checking that its meta record agrees with `meta` on `meta_keys` (default: all).

  Args:
    workdir: the run directory.
    make_state: builds a fresh train state of this config (never run, only traced for shapes).
    meta: what the checkpoint must have been made for (see `check_compatible`).
    train_command: the command the error suggests when there is no checkpoint yet.
    best_metric: the metric that picked the best checkpoint during training, or ''.
    meta_keys: the meta entries that must agree (e.g. the model and vocabulary only).
  """
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():  # Look first: the manager would create the folder.
    raise UserError(f'no checkpoint in {workdir}; train first: {train_command} --workdir={workdir}')
  ckpt = Checkpointer(directory, best_metric=best_metric)
  try:
    step = (ckpt.best_step() if best_metric else None) or ckpt.latest_step()
    if step is None:
      raise UserError(f'no checkpoint in {workdir}; train first: {train_command} '
                      f'--workdir={workdir}')
    saved = ckpt.read_meta(step)
    keys = meta_keys or sorted(set(saved) | set(meta))
    check_compatible({k: saved.get(k) for k in keys}, {k: meta.get(k) for k in keys}, workdir)
    state = ckpt.restore(step, {'state': jax.eval_shape(make_state)})['state']
    return Restored(state, step, saved)
  finally:
    ckpt.close()


def refuse_incompatible(workdir: Path, meta: dict) -> int | None:
  """Refuses a workdir whose latest checkpoint was made for something else than `meta`.

  Resuming checks this too; a run calls it first when it writes files (a vocabulary) that the
  existing checkpoint depends on. Returns the latest step, or None when there is no checkpoint.
  """
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return None
  ckpt = Checkpointer(directory)
  try:
    latest = ckpt.latest_step()
    if latest is not None:
      check_compatible(ckpt.read_meta(latest), meta, workdir)
    return latest
  finally:
    ckpt.close()


def restore_template(tree: Any, mesh: jax.sharding.Mesh | None = None) -> Any:
  """What orbax restores into: every leaf's shape and dtype, replicated over `mesh`.

  Naming the current devices matters: without a sharding orbax falls back to the layout the
  checkpoint was saved with, and a checkpoint written on 4 devices then fails to load on 1.
  """
  replicated = NamedSharding(mesh or sharding.local_mesh(), P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), tree)


def _short(value: Any) -> str:
  text = json.dumps(value, sort_keys=True)
  return text if len(text) <= 120 else text[:117] + '...'
