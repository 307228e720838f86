"""Several seeds of one experiment trained as one program: a leading seed axis and `jax.vmap`.

Each seed draws its own epoch order and writes its own directory (checkpoints, metrics), exactly
what a run of that seed alone would (docs/performance.md, "Seeds in one program")."""

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.runtime import sharding
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.training.loop import TrainTask
from aml2_jax.runtime.metrics_logging import MetricLogger


def stack(trees: Sequence[Any]) -> Any:
  """Trees of equal structure -> one tree whose leaves have a leading axis [seeds, ...].

  The first tree's static fields are kept: each seed's TrainState holds its own (equal) `tx`.
  """
  leaves = zip(*(jax.tree.leaves(tree) for tree in trees))
  return jax.tree.unflatten(jax.tree.structure(trees[0]), [jnp.stack(x) for x in leaves])


def take(tree: Any, k: int) -> Any:
  """Seed `k`'s slice of a stacked tree (device or host arrays)."""
  return jax.tree.map(lambda leaf: leaf[k], tree)


def stack_tasks(tasks: Sequence[TrainTask], seeds: Sequence[int]) -> TrainTask:
  """One task training `tasks` (one per seed of `seeds`; the same step, data of one shape) side
  by side: the first task's step vmapped, meta `{'seeds': [each task's meta]}`."""
  sizes = [task.num_examples for task in tasks]
  shapes = {tuple(np.shape(x) for x in jax.tree.leaves(task.data)) for task in tasks}
  if len(set(sizes)) > 1 or len(shapes) > 1:
    raise UserError(f'seeds {list(seeds)} have {sizes} training examples: seeds train in one '
                    'program only with training sets of one size.')
  first = tasks[0]
  per_seed_end = [task.end_epoch for task in tasks]

  def end_epoch(state, metrics):
    return stack([end(take(state, k), take(metrics, k)) for k, end in enumerate(per_seed_end)])

  return TrainTask(state=stack([task.state for task in tasks]),
                   train_step=jax.vmap(first.train_step),
                   data=jax.tree.map(lambda *leaves: np.stack(leaves), *[t.data for t in tasks]),
                   num_examples=first.num_examples, end_epoch=end_epoch,
                   meta={'seeds': [task.meta for task in tasks]},
                   compiler_options=first.compiler_options, seeds=tuple(seeds))


class SeedLoggers:
  """The `MetricLogger` of a seed batch: seed k's slice of every metric goes to `loggers[k]`."""

  def __init__(self, loggers: Sequence[MetricLogger]):
    self.loggers = list(loggers)

  def scalars(self, step: int, values: dict, **context) -> None:
    for k, logger in enumerate(self.loggers):
      logger.scalars(step, {name: np.ravel(v)[k] for name, v in values.items()}, **context)

  def close(self) -> None:
    for logger in self.loggers:
      logger.close()


class SeedCheckpointers:
  """The `Checkpointer` of a seed batch: `ckpts[k]` saves seed k's slices, meta and metrics (so
  each seed keeps its own best step); `directory` says where they are, for messages."""

  def __init__(self, ckpts: Sequence[Checkpointer], directory: Path):
    self.ckpts, self.directory = list(ckpts), Path(directory)

  def latest_step(self) -> int | None:
    """The newest step that every seed has saved (None when some seed has none)."""
    steps = [ckpt.latest_step() for ckpt in self.ckpts]
    return None if None in steps else min(steps)

  def save(self, step: int, items: dict[str, Any], meta: dict, metrics: dict | None = None) -> None:
    for k, ckpt in enumerate(self.ckpts):
      latest = ckpt.latest_step()
      if latest is not None and latest >= step:
        # Saved already, before an interruption that stopped the other seeds short of this step:
        # the resumed run recomputes the same state, and orbax never rewrites a step.
        continue
      seed_metrics = {name: np.ravel(v)[k] for name, v in metrics.items()} if metrics else None
      ckpt.save(step, take(items, k), meta['seeds'][k], seed_metrics)

  def wait(self) -> None:
    for ckpt in self.ckpts:
      ckpt.wait()

  def close(self) -> None:
    for ckpt in self.ckpts:
      ckpt.close()

  def resume(self, templates: dict[str, Any], meta: dict,
             mesh: jax.sharding.Mesh | None = None) -> tuple[int, dict[str, Any]] | None:
    """(step, stacked items) of the newest step that every seed has intact, or None."""
    seed_templates, step = take(templates, 0), self.latest_step()
    while step is not None:
      found = []
      for ckpt, seed_meta in zip(self.ckpts, meta['seeds']):
        # Each seed's newest intact step up to `step`: an older one lowers the step for all.
        one = ckpt.find(seed_meta, templates=seed_templates, mesh=mesh, at_most=step)
        if one is None or one.step < step:
          break
        found.append(one.items)
      else:
        return step, sharding.replicate(stack(found), mesh or sharding.local_mesh())
      step = None if one is None else one.step
    if any(ckpt.all_steps() for ckpt in self.ckpts):
      console.warn(f'warning: no step is saved intact for every seed in {self.directory}: '
                   'training starts from step 0.')
    return None
