"""Saving and finding train states with orbax: the one way a checkpoint is written and found.

A checkpoint holds the whole train state (params, optimizer and schedule state, step, RNG key
data, the running sums of the current epoch's metrics) and a JSON `meta` record of what it was
made for (`restore.checkpoint_meta`). Orbax writes each step to a temporary directory, renames it
when complete and keeps the latest K and the best one (its preservation policies); a manifest of
every file's size and SHA-256 then completes the step (`checkpoint_integrity`).

`Checkpointer.find` is how every mode (train, eval, sample, predict) finds a checkpoint: the
newest (or best) intact one that fits the config (`checkpoint_integrity.check_compatible`).
A damaged step is moved aside to `<step>.damaged` with a warning, in every mode, and the next one
is used: no mode can ever use it, and left under its step name orbax would count it among the
steps it keeps and every later command would trip on it again. Moved, not deleted: the bytes stay
for inspection. On a read-only disk it is left in place and skipped.

A save that fails for a reason of the disk (full, read-only, I/O error) is one `StorageError`
naming the step, the fix and the newest complete checkpoint; the failed step's files are removed.
"""

import dataclasses
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
from aml2_jax.training.checkpoint_integrity import (  # noqa: F401 (MANIFEST: re-exported)
    DAMAGED_SUFFIX, MANIFEST, DamagedCheckpoint, check_compatible)


@dataclasses.dataclass(frozen=True)
class Found:
  """A checkpoint `find` picked: its step, the meta record saved with it, the restored items."""
  step: int
  meta: dict
  items: dict[str, Any]


class Checkpointer:
  """An orbax `CheckpointManager` for one workdir: keeps the latest K and the best one.

  Args:
    directory: where step directories go (`<workdir>/checkpoints`).
    keep: how many of the latest checkpoints to keep.
    best_metric: the metric (passed to `save`) that picks the best checkpoint; '' = none.
    best_mode: 'min' or 'max' for `best_metric`.
  """

  def __init__(self, directory: Path, keep: int = 2, best_metric: str = '', best_mode: str = 'min'):
    faults.install_quiet_hooks()
    self.directory = Path(directory).absolute()
    self.best_metric = best_metric
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

  # --- Saving ------------------------------------------------------------------------------

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
      step, self.pending = self.pending, None
      if (self.directory / str(step)).is_dir():
        self._write_manifest(step)
        faults.crash_point(f'checkpoint:{self.directory / str(step)}')

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

  def _write_manifest(self, step: int) -> None:
    if console.is_main_process():
      with storage.writing(self.directory / str(step), '--workdir', self._kept_note()):
        integrity.write_manifest(self.directory / str(step))

  # --- Finding and restoring ---------------------------------------------------------------

  def find(self, meta: dict, *, resume: bool = True, keys: Sequence[str] | None = None,
           best: bool = False, templates: dict[str, Any] | None = None,
           mesh: jax.sharding.Mesh | None = None) -> Found | None:
    """The newest intact checkpoint that fits `meta`, or None when no step is left.

    Tries the newest step (with `best`, orbax's best one by `best_metric` first) with `load`. A
    damaged step is moved aside (see the module docstring) and the next one tried; a step made
    for another config raises `UserError`, since every step of a workdir comes from one config.
    """
    tried = set()
    while (step := self._next_step(best, tried)) is not None:
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
    """(restored items, saved meta) of `step`: files verified, meta checked against `meta` by
    `check_compatible(**rule)`, `templates` restored. Damage raises `DamagedCheckpoint`."""
    reason = self.verify(step)
    if reason:
      raise DamagedCheckpoint(self.directory, step, reason)
    saved = self.read_meta(step)
    check_compatible(saved, meta, self.directory.parent, **rule)
    return (self.restore(step, templates, mesh) if templates else {}), saved

  def _next_step(self, best: bool, tried: set[int]) -> int | None:
    first = self.manager.best_step() if best else None  # Orbax's pick; recomputed after a move.
    if first is not None and first not in tried:
      return first
    return max((s for s in self.manager.all_steps() if s not in tried), default=None)

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
    """Restores the named items saved at `step` into the structures of `templates`.

    A template is a pytree of arrays or `jax.ShapeDtypeStruct`s; the restored arrays are
    replicated over `mesh` (default: this process's first device), whatever layout and device
    count they were saved with. Raises `DamagedCheckpoint` when the files cannot be read, and a
    `UserError` when they do not fit the templates.
    """
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
                      f'model ({integrity.first_line(e)}); use another --workdir.') from e

  def move_aside(self, step: int) -> Path | None:
    """Renames step directory `<step>` to `<step>.damaged` (orbax ignores it); the new path, or
    None where it cannot be moved (a read-only disk, a process other than 0)."""
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
