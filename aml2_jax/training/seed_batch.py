"""Several seeds of one experiment trained as one program: a leading seed axis and `jax.vmap`.

On a CPU a small step's work grows with every seed (measured: docs/performance.md), so what one
program saves there is the compilations, one instead of one per seed; on an accelerator, which a
small model leaves mostly idle, the stacked seeds are expected to cost little more than one (not
measured here). `stack_tasks` turns the `TrainTask`s of several seeds (same model and
optimizer; own init, data split and order) into one task whose state and data have a leading
seed axis and whose step is the seeds' own `train_step` under `jax.vmap`; the shared loop then
draws each seed's epoch order from that seed (`TrainTask.seeds`), so every seed sees the batches
its own run would, and ends with the same parameters up to float rounding.

What a run writes stays per seed: `SeedCheckpointers` saves each seed's slice of the state (and
of the epoch's running sums) with that seed's metrics into that seed's own `Checkpointer`, and
resumes by stacking them back; `SeedLoggers` writes each seed's metrics to its own logger. A seed
directory thus holds exactly what a run of that seed alone would: restore, eval and prediction
of one seed need nothing else, and the best checkpoint is each seed's own.
"""

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.runtime import sharding
from aml2_jax.training.checkpoint_integrity import DamagedCheckpoint
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
  """One task training `tasks` (one per seed in `seeds`) side by side in one program.

  The tasks must differ only in their state and data (the same `train_step`, up to its bound
  model and optimizer being equal, and data of equal shapes); the first one's step is vmapped.
  The result's `meta` is `{'seeds': [each task's meta]}` (what `SeedCheckpointers` saves).

  Raises:
    UserError: the tasks have different numbers of training examples (or data shapes), so their
      epochs cannot be stepped together.
  """
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
  """The `Checkpointer` of a seed batch: one per seed, each in that seed's own directory.

  `save` writes seed k's slice of every item, with `meta['seeds'][k]` and seed k's metrics (so
  each seed keeps its own best step); `resume` restores the newest step every seed has intact
  and stacks the seeds back.

  Args:
    ckpts: one checkpointer per seed, in the seed batch's order.
    directory: a description of where they are (e.g. `<workdir>/seed_*/checkpoints`), for messages.
  """

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
    """(step, stacked items) of the newest step that every seed has intact, or None.

    A damaged step is moved aside (see `Checkpointer.resume`) and the next older common step
    tried; without one, training starts over.
    """
    seed_templates = take(templates, 0)
    common = set.intersection(*(set(ckpt.all_steps()) for ckpt in self.ckpts))
    for step in sorted(common, reverse=True):
      restored = self._load_every_seed(step, seed_templates, meta['seeds'], mesh)
      if restored is not None:
        return step, sharding.replicate(stack(restored), mesh or sharding.local_mesh())
    if any(ckpt.all_steps() for ckpt in self.ckpts):
      console.warn(f'warning: no step is saved intact for every seed in {self.directory}: '
                   'training starts from step 0.')
    return None

  def _load_every_seed(self, step: int, templates: dict[str, Any], metas: Sequence[dict],
                       mesh: jax.sharding.Mesh | None) -> list[dict[str, Any]] | None:
    """Every seed's items at `step`, or None after moving a damaged seed's step aside."""
    restored = []
    for ckpt, seed_meta in zip(self.ckpts, metas):
      try:
        restored.append(ckpt.load(step, templates, seed_meta, mesh)[0])
      except DamagedCheckpoint as e:
        moved = ckpt.move_aside(step)
        console.warn(f'warning: {e}; ' + (f'moved it to {moved}' if moved else 'left it in place')
                     + ', falling back to the previous step that every seed has.')
        return None
    return restored
