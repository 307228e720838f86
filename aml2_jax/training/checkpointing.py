"""Saving and restoring train states with orbax, plus what makes a checkpoint compatible or intact.

A checkpoint holds the whole train state (params, optimizer and schedule state, step, RNG key
data, the running sums of the current epoch's metrics) and a JSON `meta` record: the experiment,
the model config and anything else (vocabulary digest) that must match for a restore to make sense.
Orbax writes each step to a temporary directory and renames it when complete, so a crash during a
save leaves the previous checkpoint restorable.

Integrity. Once a save has completed, `MANIFEST` (`aml2_manifest.json`) is written into its step
directory: the size and SHA-256 of every file. Every restore first verifies the step against it
(steps without one, saved before manifests existed or cut off just before it was written, get a
structural check of orbax's JSON files instead), so a corrupted, truncated or incomplete step is
reported as damaged (`DamagedCheckpoint`), never as a config mismatch. Training moves a damaged
step aside (`<step>.damaged`, which orbax ignores) and resumes from the newest intact one;
`restore_trained` (eval, sampling, prediction) falls back to an earlier step for the latest one,
and refuses when the best one it was asked for is damaged.

Write errors. A save that fails for a reason of the disk (full, read-only, I/O error) becomes a
`storage.StorageError` naming the step, the error, the fix and the newest complete checkpoint,
which is left as it was; the failed step's temporary directory is removed.
"""

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
from orbax.checkpoint import checkpoint_managers as policies

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.runtime import faults, sharding, storage
from aml2_jax.training import checkpoint_integrity as integrity
from aml2_jax.training.checkpoint_integrity import DAMAGED_SUFFIX, MANIFEST, DamagedCheckpoint

def _step_metadata_readable(directory: Path) -> bool:
  for path in (p for name in _STEP_JSON_FILES for p in directory.glob(f'*/{name}')):
    try:
      json.loads(path.read_text())
    except (OSError, ValueError):
      return False
  return True


# orbax's per-step JSON files that it parses when it tracks a best step.
_STEP_JSON_FILES = ('_CHECKPOINT_METADATA', 'metrics/metrics')


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
    readable = _step_metadata_readable(self.directory)
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

  def best_step(self) -> int | None:
    """The best step by `best_metric`, else the latest."""
    return self.manager.best_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  # --- Saving ------------------------------------------------------------------------------

  def save(self, step: int, items: dict[str, Any], meta: dict, metrics: dict | None = None) -> None:
    """Saves pytrees `items` (by name) and `meta` at `step` (async; `wait` or `close` to finish)."""
    self._finish_pending()
    storage.probe_writable(self.directory, '--workdir', self._kept_note())
    args = ocp.args.Composite(meta=ocp.args.JsonSave(meta),
                              **{k: ocp.args.StandardSave(v) for k, v in items.items()})
    metrics = {k: float(v) for k, v in metrics.items()} if metrics else None
    self.pending = step
    try:
      self.manager.save(step, args=args, metrics=metrics, force=True)
    except Exception as e:  # pylint: disable=broad-except
      self._raise_save_failure(e)

  def wait(self) -> None:
    """Waits for the save in progress and writes its manifest; raises its error, if any."""
    self._finish_pending()

  def close(self) -> None:
    try:
      if self.failed is None:
        self._finish_pending()
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        if self.failed is None:
          raise  # Otherwise the same failure again: it was raised already.

  def _finish_pending(self) -> None:
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
    if not console.is_main_process():
      return
    step_dir = self.directory / str(step)
    with storage.writing(step_dir, '--workdir', self._kept_note()):
      files = integrity.file_digests(step_dir)
    storage.atomic_write_text(step_dir / MANIFEST, json.dumps({'files': files}, indent=1) + '\n',
                              '--workdir')

  # --- Verifying and restoring ---------------------------------------------------------------

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
    args = ocp.args.Composite(**{k: ocp.args.StandardRestore(restore_template(v, mesh))
                                 for k, v in templates.items()})
    try:
      restored = self.manager.restore(step, args=args)
      return {k: restored[k] for k in templates}
    except Exception as e:  # pylint: disable=broad-except
      cause = integrity.read_failure(e)
      if cause is not None:
        raise DamagedCheckpoint(self.directory, step, integrity.reason(cause, self.directory / str(step))
                                ) from e
      if not isinstance(e, (ValueError, KeyError, TypeError)):
        raise
      raise UserError(f'checkpoint {self.directory / str(step)} does not fit this config\'s '
                      f'model ({integrity.first_line(e)}); use another --workdir.') from e

  def load(self, step: int, templates: dict[str, Any], meta: dict,
           mesh: jax.sharding.Mesh | None = None,
           meta_keys: Sequence[str] | None = None) -> tuple[dict[str, Any], dict]:
    """(restored items, saved meta) of `step`: verified, checked against `meta`, restored.

    Raises `DamagedCheckpoint` for damaged files and `UserError` when the step was made for
    another config (on `meta_keys`, default all), which no other step would fix.
    """
    reason = self.verify(step)
    if reason:
      raise DamagedCheckpoint(self.directory, step, reason)
    saved = self.read_meta(step)
    keys = meta_keys or sorted(set(saved) | set(meta))
    check_compatible({k: saved.get(k) for k in keys}, {k: meta.get(k) for k in keys},
                     self.directory.parent)
    return self.restore(step, templates, mesh), saved

  def resume(self, templates: dict[str, Any], meta: dict,
             mesh: jax.sharding.Mesh | None = None) -> tuple[int, dict[str, Any]] | None:
    """(step, items) of the newest intact checkpoint, moving damaged newer ones aside.

    Returns None when there is no checkpoint, or none is intact (then training starts over; the
    damaged steps stay aside, nothing is deleted). Each damaged step is reported on stderr.
    """
    damaged = []
    for step in reversed(self.all_steps()):
      try:
        restored, _ = self.load(step, templates, meta, mesh)
        return step, restored
      except DamagedCheckpoint as e:
        damaged.append(step)
        moved = self.move_aside(step)
        console.warn(f'warning: {e}; ' + (f'moved it to {moved}' if moved else 'left it in place'
                                          ) + ', falling back to the previous checkpoint.')
    if damaged:
      console.warn(f'warning: no intact checkpoint is left in {self.directory}: training starts '
                   'from step 0 (the damaged ones are kept aside).')
    return None

  def move_aside(self, step: int) -> Path | None:
    """Renames step directory `<step>` to `<step>.damaged` (orbax ignores it); the new path."""
    if not console.is_main_process():
      return None
    source = self.directory / str(step)
    target = self.directory / f'{step}{DAMAGED_SUFFIX}'
    n = 1
    while target.exists():
      n += 1
      target = self.directory / f'{step}{DAMAGED_SUFFIX}-{n}'
    try:
      source.rename(target)
    except OSError:
      return None  # E.g. a read-only disk: the step is skipped, not moved.
    finally:
      self.manager.reload()
    return target


def check_compatible(saved: dict, current: dict, workdir: Path) -> None:
  """Refuses to resume or restore when what the checkpoint was made for differs from now."""
  current = json.loads(json.dumps(current))  # As saved: tuples become lists.
  for key in sorted(set(saved) | set(current)):
    if saved.get(key) != current.get(key):
      raise UserError(
          f'the checkpoint in {workdir} was made with a different {key} '
          f'({_short(saved.get(key))} there, {_short(current.get(key))} now); '
          f'use another --workdir, or the config that made it.')


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
