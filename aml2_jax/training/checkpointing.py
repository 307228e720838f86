"""Saving and finding train states with orbax: the one way a checkpoint is written and found.

Orbax keeps the latest K steps and the best one; this adds a manifest per step and one policy for
damaged steps and failed saves (docs/reliability.md)."""

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.runtime import faults, sharding, storage
from aml2_jax.training import checkpoint_integrity as integrity
from aml2_jax.training.checkpoint_integrity import (DAMAGED_SUFFIX, DamagedCheckpoint,
                                                     check_compatible)


@dataclasses.dataclass(frozen=True)
class Found:
  """A checkpoint `find` picked: its step, the meta record saved with it, the restored items."""
  step: int
  meta: dict
  items: dict[str, Any]

  @property
  def state(self) -> Any:
    return self.items['state']


class Checkpointer:
  """An orbax `CheckpointManager` in `directory` (`<workdir>/checkpoints`) keeping the latest
  `keep` steps and the best one by `best_metric` (a metric passed to `save`; '' = none)."""

  def __init__(self, directory: Path, keep: int = 2, best_metric: str = '', best_mode: str = 'min'):
    faults.install_quiet_hooks()
    self.directory = Path(directory).absolute()
    policy = [policies.LatestN(n=keep)]
    best_fn = None
    # orbax parses every step's metrics when it opens the folder and fails on a damaged file:
    # then it opens without them (and without best-step tracking), and the damage is found and
    # handled by the manifest check instead.
    readable = integrity.step_metadata_readable(self.directory)
    if best_metric and readable:
      best_fn = lambda metrics: metrics[best_metric]
      policy.append(policies.BestN(get_metric_fn=best_fn, reverse=best_mode == 'min', n=1,
                                   keep_checkpoints_without_metrics=False))
    # best_fn must be set for orbax to write the metrics at all; the policy decides what stays.
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn, best_mode=best_mode, create=True, lightweight_initialize=not readable,
        preservation_policy=policies.AnyPreservationPolicy(policy))
    with storage.writing(self.directory, '--workdir'):
      self.manager = ocp.CheckpointManager(self.directory, options=options)
    self.pending = None  # The step being saved in the background.
    self.failed = None  # The save error already raised: close() must not raise it again.

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, items: dict[str, Any], meta: dict, metrics: dict | None = None) -> None:
    """Saves pytrees `items` (by name) and `meta` at `step` (async; `wait` or `close` to finish)."""
    self.wait()
    storage.probe_writable(self.directory, '--workdir', self._kept_note())
    args = ocp.args.Composite(meta=ocp.args.JsonSave(meta),
                              **{k: ocp.args.StandardSave(v) for k, v in items.items()})
    metrics = {k: float(v) for k, v in metrics.items()} if metrics else None
    self.pending = step
    try:
      self.manager.save(step, args=args, metrics=metrics, force=True)
    except Exception as e:  # pylint: disable=broad-except
      self._raise_save_failure(e)

  def close(self) -> None:
    try:
      if self.failed is None:
        self.wait()
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        if self.failed is None:
          raise  # Otherwise the same failure again: it was raised already.

  def wait(self) -> None:
    """Waits for the save in progress and writes its manifest; raises its error, if any."""
    if self.failed is not None:
      raise self.failed
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._raise_save_failure(e)
    if self.pending is not None:
      step_dir, self.pending = self.directory / str(self.pending), None
      if step_dir.is_dir():
        if console.is_main_process():
          with storage.writing(step_dir, '--workdir', self._kept_note()):
            integrity.write_manifest(step_dir)
        faults.crash_point(f'checkpoint:{step_dir}')

  def _raise_save_failure(self, error: Exception) -> None:
    """Raises what a failed save of `self.pending` means: a StorageError for a disk fault."""
    step, self.pending = self.pending, None
    for partial in self.directory.glob(f'{step}.orbax-checkpoint-tmp*'):
      shutil.rmtree(partial, ignore_errors=True)  # Frees the space the failed write took.
    self.failed = storage.as_storage_error(error, self.directory / str(step), '--workdir',
                                           self._kept_note(exclude=step)) or error
    if self.failed is error:
      raise error
    raise self.failed from error

  def _kept_note(self, exclude: int | None = None) -> str:
    """Which checkpoint survives a failed save, for the error message."""
    steps = [s for s in self.manager.all_steps() if s != exclude]
    if not steps:
      return 'no checkpoint was completed yet.'
    return (f'the newest complete checkpoint, step {max(steps)}, is intact: the same command '
            'resumes from it.')

  def find(self, meta: dict, *, resume: bool = True, keys: Sequence[str] | None = None,
           best: bool = False, templates: dict[str, Any] | None = None,
           mesh: jax.sharding.Mesh | None = None, at_most: float = math.inf) -> Found | None:
    """The newest (with `best`: orbax's best first) intact step up to `at_most` that fits `meta`
    (see `load`), or None. A damaged step is moved aside and the next one tried; a step made for
    another config raises `UserError` (every step of a workdir comes from one config)."""
    tried = set()
    while (step := self._next_step(best, tried, at_most)) is not None:
      tried.add(step)
      try:
        items, saved = self.load(step, templates or {}, meta, mesh, resume=resume, keys=keys)
        return Found(step, saved, items)
      except DamagedCheckpoint as e:
        moved = self.move_aside(step)
        console.warn(f'warning: {e}; ' + (f'moved it to {moved}' if moved else 'left it in place')
                     + ', using the next intact one.')
    return None

  def resume(self, templates: dict[str, Any], meta: dict,
             mesh: jax.sharding.Mesh | None = None) -> tuple[int, dict[str, Any]] | None:
    """(step, items) that training resumes from (see `find`), or None to start at step 0."""
    had_steps = bool(self.all_steps())
    found = self.find(meta, templates=templates, mesh=mesh)
    if found is None and had_steps:
      console.warn(f'warning: no intact checkpoint is left in {self.directory}: training starts '
                   'from step 0 (the damaged ones are kept aside).')
    return None if found is None else (found.step, found.items)

  def load(self, step: int, templates: dict[str, Any], meta: dict,
           mesh: jax.sharding.Mesh | None = None, **rule) -> tuple[dict[str, Any], dict]:
    """(restored `templates`, saved meta) of `step`, its files verified and its meta checked by
    `check_compatible(**rule)`; damage raises `DamagedCheckpoint`."""
    reason = self.verify(step)
    if reason:
      raise DamagedCheckpoint(self.directory, step, reason)
    saved = self.read_meta(step)
    check_compatible(saved, meta, self.directory.parent, **rule)
    return (self.restore(step, templates, mesh) if templates else {}), saved

  def _next_step(self, best: bool, tried: set[int], at_most: float) -> int | None:
    left = [s for s in self.manager.all_steps() if s not in tried and s <= at_most]
    first = self.manager.best_step() if best else None  # Orbax's pick; recomputed after a move.
    return first if first in left else max(left, default=None)

  def verify(self, step: int) -> str | None:
    """Why the files of `step` cannot be trusted, or None when they are intact."""
    return integrity.verify_step(self.directory / str(step))

  def read_meta(self, step: int) -> dict:
    """The JSON record saved with `step`."""
    try:
      return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # pylint: disable=broad-except
      raise DamagedCheckpoint(self.directory, step,
                              f'its meta record is unreadable: {integrity.first_line(e)}') from e

  def restore(self, step: int, templates: dict[str, Any],
              mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
    """The items of `step` named by `templates` (pytrees of arrays or ShapeDtypeStructs),
    replicated over `mesh` (default: this process's first device) whatever device count saved
    them. Unreadable files raise `DamagedCheckpoint`; files that do not fit, a `UserError`."""
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(sharding.replicated_like(v, mesh))
                                 for k, v in templates.items()})
    try:
      restored = self.manager.restore(step, args=args)
      return {k: restored[k] for k in templates}
    except Exception as e:  # pylint: disable=broad-except
      cause = integrity.read_failure(e)
      if cause is not None:
        raise DamagedCheckpoint(self.directory, step,
                                integrity.reason(cause, self.directory / str(step))) from e
      if not isinstance(e, (ValueError, KeyError, TypeError)):
        raise
      raise UserError(f'checkpoint {self.directory / str(step)} does not fit this config\'s '
                      f'model or this version\'s train state ({integrity.first_line(e)}); use '
                      'another --workdir.') from e

  def move_aside(self, step: int) -> Path | None:
    """Renames `<step>` to `<step>.damaged`, which orbax ignores; the new path, or None where it
    cannot be moved (a read-only disk, a process other than 0)."""
    if not console.is_main_process():
      return None
    target = self.directory / f'{step}{DAMAGED_SUFFIX}'
    n = 1
    while target.exists():
      n += 1
      target = self.directory / f'{step}{DAMAGED_SUFFIX}-{n}'
    try:
      (self.directory / str(step)).rename(target)
    except OSError:
      return None
    finally:
      self.manager.reload()
    return target
