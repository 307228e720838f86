"""Saving and restoring train states with orbax, plus what makes a checkpoint compatible.

A checkpoint holds the whole train state (params, optimizer and schedule state, step, RNG key
data, the running sums of the current epoch's metrics) and a JSON `meta` record: the experiment,
the model config and anything else (vocabulary digest) that must match for a restore to make sense.
Orbax writes each step to a temporary directory and renames it when complete, so a crash during a
save leaves the previous checkpoint restorable.
"""

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from aml2_jax.errors import UserError


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

  def restore(self, step: int, abstract_items: dict[str, Any]) -> dict[str, Any]:
    """Restores the named items saved at `step` into the structures of `abstract_items`."""
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(v) for k, v in abstract_items.items()})
    try:
      restored = self.manager.restore(step, args=args)
      return {k: restored[k] for k in abstract_items}
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


def restore_latest_state(workdir: Path, meta: dict, make_state, train_command: str) -> Any:
  """The train state of the latest checkpoint in `<workdir>/checkpoints`, checked against `meta`.

  `make_state()` builds a fresh state (only traced, for shapes); `train_command` is what the
  error suggests when there is no checkpoint yet.
  """
  ckpt = Checkpointer(Path(workdir) / 'checkpoints')
  try:
    step = ckpt.latest_step()
    if step is None:
      raise UserError(f'no checkpoint in {workdir}; train first: {train_command} --workdir={workdir}')
    check_compatible(ckpt.read_meta(step), meta, workdir)
    abstract = abstract_like(jax.eval_shape(make_state))
    return ckpt.restore(step, {'state': abstract})['state']
  finally:
    ckpt.close()


def abstract_like(state: Any) -> Any:
  """The shape/dtype skeleton of a state, as orbax restores into (no memory allocated)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _short(value: Any) -> str:
  text = json.dumps(value, sort_keys=True)
  return text if len(text) <= 120 else text[:117] + '...'
