"""The training loop every experiment shares: epochs of jitted step chunks, resumable to the step.

An experiment hands over a `TrainTask`: its train state (a pytree with an integer `step`), a pure
`train_step(state, data, batch_idx) -> (state, metrics)`, the arrays the step gathers its batches
from (placed on device once) and host-side hooks for the end of an epoch. The loop owns the data
order, the fused step chunks, progress bars, logging, checkpoints, resumption and stopping.

Exact resumption: epoch `e`'s order is a permutation drawn from `(seed, e)`, the step's randomness
comes from `fold_in(key, step)`, and the running sums of the epoch's metrics are saved with the
state, so a run restarted from any checkpoint ends with the same parameters and metrics.
"""

import dataclasses
import signal
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax import sharding
from aml2_jax.checkpointing import Checkpointer, abstract_like, check_compatible
from aml2_jax.errors import UserError
from aml2_jax.metrics_logging import MetricLogger, progress_bar

Metrics = dict[str, jax.Array]


@dataclasses.dataclass
class TrainTask:
  """What the loop needs from an experiment.

  Attributes:
    state: the initial train state; a pytree whose `step` field counts train steps.
    train_step: pure `(state, data, batch_idx[batch]) -> (state, metrics)`; metrics are per-step
      means (scalars) and must include 'loss'.
    data: pytree of arrays (on host or device) that `train_step` indexes with `batch_idx`.
    num_examples: the number of indexable training examples (batch_idx values are in [0, this)).
    evaluate: host hook `(state) -> metrics` run after every epoch (held-out metrics).
    end_epoch: host hook `(state, train_metrics) -> state` (e.g. a plateau schedule).
    report_epoch: host hook `(state, epoch, logger)` for pictures and samples.
    meta: the JSON record saved with every checkpoint (see `checkpointing.check_compatible`).
    compiler_options: XLA options for compiling the step chunk (measured per experiment).
  """
  state: Any
  train_step: Callable[[Any, Any, jax.Array], tuple[Any, Metrics]]
  data: Any
  num_examples: int
  evaluate: Callable[[Any], dict] = lambda state: {}
  end_epoch: Callable[[Any, dict], Any] = lambda state, metrics: state
  report_epoch: Callable[[Any, int, MetricLogger], None] = lambda state, epoch, logger: None
  meta: dict = dataclasses.field(default_factory=dict)
  compiler_options: dict = dataclasses.field(default_factory=dict)


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; nothing after the last good checkpoint was saved."""


def epoch_order(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Example indices of an epoch, [steps_per_epoch, batch]; the remainder is dropped."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  steps = num_examples // batch_size
  return order[:steps * batch_size].reshape(steps, batch_size)


def make_train_chunk(train_step: Callable, compiler_options: dict | None = None) -> Callable:
  """Fuses a chunk of steps into one jitted call: `(state, sums, data, idx[n, batch])`.

  `sums` accumulates each metric over the epoch on device (plus 'num_steps'); the call also
  returns the last step's metrics, which the host reads to watch for divergence.
  """

  def chunk(state, sums, data, batch_idx_NxB):
    def body(carry, batch_idx):
      state, sums = carry
      state, metrics = train_step(state, data, batch_idx)
      sums = jax.tree.map(jnp.add, sums, {**metrics, 'num_steps': jnp.ones((), jnp.float32)})
      return (state, sums), metrics
    if batch_idx_NxB.shape[0] == 1:
      # No loop for one step: XLA:CPU runs convolutions inside a while loop without its fast
      # conv kernels (a CNN step measured 1.8 s in a scan vs 0.13 s outside), so such models
      # use steps_per_call=1.
      (state, sums), metrics = body((state, sums), batch_idx_NxB[0])
      return state, sums, metrics
    (state, sums), metrics_N = jax.lax.scan(body, (state, sums), batch_idx_NxB)
    return state, sums, jax.tree.map(lambda m: m[-1], metrics_N)

  return jax.jit(chunk, donate_argnums=(0, 1), compiler_options=compiler_options)


def zero_sums(train_step: Callable, state: Any, data: Any, batch_size: int) -> Metrics:
  """All-zero running sums with the structure of the step's metrics (found by tracing only)."""
  batch_idx = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
  _, metrics = jax.eval_shape(train_step, state, data, batch_idx)
  return {**{k: jnp.zeros((), jnp.float32) for k in metrics}, 'num_steps': jnp.zeros((), jnp.float32)}


class StopSignal:
  """Turns SIGINT/SIGTERM into a flag the loop checks between chunks, so it can save first."""

  def __init__(self):
    self.received = None

  def __enter__(self) -> 'StopSignal':
    self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    return self

  def _handle(self, signum, frame) -> None:
    if self.received is not None:  # A second Ctrl-C: stop at once.
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc) -> None:
    for s, handler in self.previous.items():
      signal.signal(s, handler)


class Interrupted(Exception):
  """Training was stopped by a signal after saving a checkpoint."""


def means(sums: Metrics) -> dict[str, float]:
  """Epoch means of the running sums (one device-to-host transfer)."""
  sums = jax.device_get(sums)
  count = max(float(sums['num_steps']), 1.0)
  return {k: float(v) / count for k, v in sums.items() if k != 'num_steps'}


def _check_finite(metrics: dict, step: int, ckpt: Checkpointer) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    last = ckpt.latest_step()
    kept = f'the last good checkpoint (step {last}) is kept' if last else 'no checkpoint was saved'
    raise TrainingDiverged(f'training diverged: {", ".join(f"{k}={v}" for k, v in bad.items())} '
                           f'by step {step}; {kept}. Lower the learning rate or change the seed.')


def train(task: TrainTask, config, ckpt: Checkpointer, logger: MetricLogger) -> Any:
  """Runs (or resumes) training to `config.num_epochs`; returns the final state.

  Resumes from the latest checkpoint in `ckpt` if there is one (its meta must match `task.meta`).
  Saves at every epoch end (with the epoch's eval metrics, so the best one is kept), every
  `config.checkpoint_every_steps` steps, and on SIGINT/SIGTERM before raising `Interrupted`.
  """
  mesh = sharding.data_mesh()
  sharding.check_batch_divides(config.batch_size, mesh)
  steps_per_epoch = task.num_examples // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f'config.batch_size={config.batch_size} is larger than the '
                    f'{task.num_examples} training examples; lower it.')
  print(f'training on {mesh.size} device(s) ({jax.devices()[0].platform}), data parallel')
  data = sharding.replicate(task.data, mesh)
  sums = zero_sums(task.train_step, task.state, data, config.batch_size)
  state, sums = sharding.replicate((task.state, sums), mesh)
  state, sums = _resume(ckpt, state, sums, task.meta)
  train_chunk = make_train_chunk(task.train_step, task.compiler_options)
  step = int(state.step)
  with StopSignal() as stop:
    for epoch in range(step // steps_per_epoch, config.num_epochs):
      order = epoch_order(config.seed, epoch, task.num_examples, config.batch_size)
      state, sums, step = _run_epoch(
          train_chunk, state, sums, data, order, epoch, step, config, ckpt, task.meta, mesh, stop)
      train_metrics = means(sums)
      _check_finite(train_metrics, step, ckpt)
      state = task.end_epoch(state, train_metrics)
      eval_metrics = task.evaluate(state)
      logger.scalars(step, {**{f'train_{k}': v for k, v in train_metrics.items()}, **eval_metrics},
                     epoch=epoch + 1)
      task.report_epoch(state, epoch, logger)
      sums = jax.tree.map(jnp.zeros_like, sums)
      ckpt.save(step, {'state': state, 'sums': sums}, task.meta, eval_metrics or train_metrics)
  ckpt.wait()
  return state


def train_in_workdir(task: TrainTask, config, workdir: Path, best_metric: str = '',
                     best_mode: str = 'min') -> Any:
  """`train` with checkpoints in `<workdir>/checkpoints` and logs in `workdir`."""
  ckpt = Checkpointer(Path(workdir) / 'checkpoints', config.keep_checkpoints, best_metric, best_mode)
  logger = MetricLogger(workdir)
  try:
    return train(task, config, ckpt, logger)
  finally:
    logger.close()
    ckpt.close()


def _resume(ckpt: Checkpointer, state: Any, sums: Metrics, meta: dict) -> tuple[Any, Metrics]:
  """The latest checkpoint's state and sums if there is one (and it matches `meta`)."""
  latest = ckpt.latest_step()
  if latest is None:
    return state, sums
  check_compatible(ckpt.read_meta(latest), meta, ckpt.directory.parent)
  restored = ckpt.restore(latest, abstract_like({'state': state, 'sums': sums}))
  return restored['state'], restored['sums']


def _run_epoch(train_chunk, state, sums, data, order, epoch, step, config, ckpt, meta, mesh, stop):
  """Runs the rest of one epoch from `step`; returns (state, sums, step)."""
  steps_per_epoch = order.shape[0]
  position = step - epoch * steps_per_epoch
  bar = progress_bar(steps_per_epoch, f'epoch {epoch + 1}/{config.num_epochs}', initial=position)
  pending = None  # The previous chunk's last metrics: blocking on them keeps one chunk in flight.
  while position < steps_per_epoch:
    n = min(config.steps_per_call, steps_per_epoch - position)
    batch_idx = sharding.shard_batch_axis(order[position:position + n], mesh, axis=1)
    state, sums, last = train_chunk(state, sums, data, batch_idx)
    if pending is not None:
      _check_finite(jax.device_get(pending[0]), pending[1], ckpt)
      bar.update(pending[2])
    pending = (last, step + n, n)
    position, step = position + n, step + n
    every = config.checkpoint_every_steps
    crossed = every and (step // every) > ((step - n) // every)
    if (crossed and position < steps_per_epoch) or stop.received:
      _check_finite(jax.device_get(last), step, ckpt)
      ckpt.save(step, {'state': state, 'sums': sums}, meta)
    if stop.received:
      ckpt.wait()
      bar.close()
      raise Interrupted(f'{stop.received}: saved a checkpoint at step {step} (epoch {epoch + 1}, '
                        f'{position}/{steps_per_epoch}); run the same command to resume.')
  _check_finite(jax.device_get(pending[0]), pending[1], ckpt)
  bar.update(pending[2])
  bar.close()
  return state, sums, step
