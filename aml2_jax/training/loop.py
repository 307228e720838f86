"""The training loop every experiment shares: epochs of jitted step chunks, resumable to the step.

An experiment hands over a `TrainTask` (what is trained: the state, a pure `train_step`, the arrays
it gathers batches from, an optional end-of-epoch schedule update) and `EpochHooks` (what is
observed after each epoch: held-out metrics, pictures, samples). A `Trainer` owns the rest: the
data order, the fused step chunks, progress bars, logging, checkpoints, resumption and stopping.

Exact resumption: epoch `e`'s order is a permutation drawn from `(seed, e)`, the step's randomness
comes from `fold_in(key, step)`, and the running sums of the epoch's metrics are saved with the
state, so a run restarted from any checkpoint ends with the same parameters and metrics.

Seed batches: a task made by `seed_batch.stack_tasks` trains several seeds in one program. Its
state, data and metrics have a leading seed axis and each seed draws its own epoch order, so the
loop gives it batch indices [steps, seeds, batch] and keeps every metric per seed.
"""

import dataclasses
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.training import config as config_lib
from aml2_jax.runtime import metrics_logging, sharding
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.runtime.metrics_logging import MetricLogger, progress_bar

Metrics = dict[str, jax.Array]


@dataclasses.dataclass
class TrainTask:
  """What is trained (and what the benchmark times).

  Attributes:
    state: the initial train state; a pytree whose `step` field counts train steps.
    train_step: pure `(state, data, batch_idx [batch]) -> (state, metrics)`; metrics are per-step
      means (scalars) and must include 'loss'.
    data: pytree of arrays (on host or device) that `train_step` indexes with `batch_idx`.
    num_examples: the number of indexable training examples (batch_idx values are in [0, this)).
    end_epoch: host hook `(state, train_metrics) -> state` that changes training between epochs
      (e.g. a plateau schedule); the identity by default.
    meta: the JSON record saved with every checkpoint (see `checkpointing.check_compatible`).
    compiler_options: XLA options for compiling the step chunk (see `layers.fast_ops`).
    seeds: for a seed batch (see `seed_batch`), the seed of each slice of the leading axis, which
      draws that slice's epoch order; () for one run, whose order comes from `config.seed`.
  """
  state: Any
  train_step: Callable[[Any, Any, jax.Array], tuple[Any, Metrics]]
  data: Any
  num_examples: int
  end_epoch: Callable[[Any, dict], Any] = lambda state, metrics: state
  meta: dict = dataclasses.field(default_factory=dict)
  compiler_options: dict = dataclasses.field(default_factory=dict)
  seeds: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class EpochHooks:
  """What a run observes after every epoch; none of it changes training.

  Attributes:
    evaluate: `(state) -> metrics` on held-out data, logged and saved with the checkpoint.
    report: `(state, epoch, logger)` for pictures and samples.
    console_metrics: the names of `evaluate`'s metrics that the epoch's console line shows, in
      this order; () shows them all.
  """
  evaluate: Callable[[Any], dict] = lambda state: {}
  report: Callable[[Any, int, MetricLogger], None] = lambda state, epoch, logger: None
  console_metrics: tuple[str, ...] = ()


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; nothing after the last good checkpoint was saved."""


def epoch_order(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Example indices of an epoch, [steps_per_epoch, batch]; the remainder is dropped."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  steps = num_examples // batch_size
  return order[:steps * batch_size].reshape(steps, batch_size)


def task_epoch_order(task: TrainTask, seed: int, epoch: int, batch_size: int) -> np.ndarray:
  """`epoch_order` of `seed`, or for a seed batch each seed's own: [steps, seeds, batch]."""
  if not task.seeds:
    return epoch_order(seed, epoch, task.num_examples, batch_size)
  # Each seed's order is the one its own run would draw, so a batched seed equals its solo run.
  return np.stack([epoch_order(s, epoch, task.num_examples, batch_size) for s in task.seeds], 1)


def batch_shape(task: TrainTask, batch_size: int) -> tuple[int, ...]:
  """The shape of one step's batch indices: [batch], or [seeds, batch] for a seed batch."""
  return (len(task.seeds), batch_size) if task.seeds else (batch_size,)


def make_train_chunk(train_step: Callable, compiler_options: dict | None = None) -> Callable:
  """Fuses a chunk of steps into one jitted call: `(state, sums, data, batch_idx [steps, batch])`.

  `sums` accumulates each metric over the epoch on device (plus 'num_steps'); the call also
  returns the last step's metrics, which the host reads to watch for divergence.
  """

  def chunk(state, sums, data, batch_idx):
    def body(carry, batch_idx):
      state, sums = carry
      state, metrics = train_step(state, data, batch_idx)
      sums = jax.tree.map(jnp.add, sums, {**metrics, 'num_steps': jnp.ones((), jnp.float32)})
      return (state, sums), metrics
    if batch_idx.shape[0] == 1:
      # No loop for one step: XLA:CPU runs convolutions inside a while loop without its fast
      # conv kernels (an order of magnitude slower); `steps_per_call=1` keeps them outside.
      (state, sums), metrics = body((state, sums), batch_idx[0])
      return state, sums, metrics
    (state, sums), metrics = jax.lax.scan(body, (state, sums), batch_idx)
    return state, sums, jax.tree.map(lambda m: m[-1], metrics)

  return jax.jit(chunk, donate_argnums=(0, 1), compiler_options=compiler_options)


def zero_sums(train_step: Callable, state: Any, data: Any,
              batch_size: int | tuple[int, ...]) -> Metrics:
  """All-zero running sums with the structure of the step's metrics (found by tracing only).

  `batch_size` may be a whole batch-index shape: [seeds, batch] gives per-seed sums [seeds].
  """
  shape = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
  batch_idx = jax.ShapeDtypeStruct(shape, jnp.int32)
  _, metrics = jax.eval_shape(train_step, state, data, batch_idx)
  zeros = lambda: jnp.zeros(shape[:-1], jnp.float32)
  return {**{k: zeros() for k in metrics}, 'num_steps': zeros()}


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


def means(sums: Metrics) -> dict[str, Any]:
  """Epoch means of the running sums (one device-to-host transfer): floats, or per-seed arrays
  [seeds] for a seed batch."""
  sums = jax.device_get(sums)
  count = np.maximum(np.asarray(sums['num_steps'], np.float64), 1.0)
  means_ = {k: np.asarray(v, np.float64) / count for k, v in sums.items() if k != 'num_steps'}
  return {k: float(v) if v.ndim == 0 else v for k, v in means_.items()}


def first_step(state: Any) -> int:
  """The step count of a state (a seed batch's seeds all share it)."""
  return int(np.ravel(jax.device_get(state.step))[0])


class Trainer:
  """One run's training: the compiled step chunk, its devices, checkpoints, logs and stop flag.

  Args:
    task: what is trained.
    config: the run's config (the shared fields of `training.config.base_config`).
    ckpt: where checkpoints go; the run resumes from its latest one (its meta must match).
    logger: where metrics, pictures and samples go.
    hooks: what is observed after each epoch.
  """

  def __init__(self, task: TrainTask, config, ckpt: Checkpointer, logger: MetricLogger,
               hooks: EpochHooks = EpochHooks()):
    self.task, self.config, self.ckpt, self.logger, self.hooks = task, config, ckpt, logger, hooks
    self.mesh = sharding.data_mesh(config.num_devices)
    sharding.check_batch_divides(config.batch_size, self.mesh)
    self.steps_per_epoch = task.num_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise UserError(f'config.batch_size={config.batch_size} is larger than the '
                      f'{task.num_examples} training examples; lower it.')
    self.steps_per_call = config_lib.per_backend(config, 'steps_per_call', config.steps_per_call)
    self.data = sharding.replicate(task.data, self.mesh)
    self.train_chunk = make_train_chunk(task.train_step, task.compiler_options)
    self.stop = StopSignal()

  def run(self) -> Any:
    """Runs (or resumes) training to `config.num_epochs`; returns the final state.

    Saves at every epoch end (with the epoch's eval metrics, so the best one is kept), every
    `config.checkpoint_every_steps` steps, and on SIGINT/SIGTERM before raising `Interrupted`.
    """
    console.say(f'training on {sharding.describe(self.mesh)}')
    sums = zero_sums(self.task.train_step, self.task.state, self.data,
                     batch_shape(self.task, self.config.batch_size))
    state, sums = self._resume(*sharding.replicate((self.task.state, sums), self.mesh))
    step = first_step(state)
    with self.stop:
      for epoch in range(step // self.steps_per_epoch, self.config.num_epochs):
        start = time.perf_counter()
        state, sums, step = self._run_epoch(state, sums, epoch, step)
        state, sums = self._end_epoch(state, sums, epoch, step, start)
    self.ckpt.wait()
    return state

  def _resume(self, state: Any, sums: Metrics) -> tuple[Any, Metrics]:
    """The newest intact checkpoint's state and sums if there is one (and it matches the task's
    meta); damaged newer ones are moved aside (see `Checkpointer.resume`)."""
    found = self.ckpt.resume({'state': state, 'sums': sums}, self.task.meta, self.mesh)
    if found is None:
      return state, sums
    latest, restored = found
    epoch = latest // self.steps_per_epoch
    where = (f'epoch {epoch + 1} of {self.config.num_epochs}' if epoch < self.config.num_epochs
             else f'all {self.config.num_epochs} epochs done')
    console.say(f'resuming from step {latest} ({where}), '
                f'checkpoint {self.ckpt.directory / str(latest)}')
    return restored['state'], restored['sums']

  def _run_epoch(self, state: Any, sums: Metrics, epoch: int, step: int):
    """Runs the rest of one epoch from `step`; returns (state, sums, step)."""
    config = self.config
    order = task_epoch_order(self.task, config.seed, epoch, config.batch_size)
    position = step - epoch * self.steps_per_epoch
    bar = progress_bar(self.steps_per_epoch, f'epoch {epoch + 1}/{config.num_epochs}',
                       initial=position)
    pending = None  # The previous chunk's last metrics: blocking on them keeps one chunk in flight.
    while position < self.steps_per_epoch:
      n = min(self.steps_per_call, self.steps_per_epoch - position)
      # The batch is the last axis, after the steps (and a seed batch's seeds).
      batch_idx = sharding.shard_batch_axis(order[position:position + n], self.mesh, axis=-1)
      state, sums, last = self.train_chunk(state, sums, self.data, batch_idx)
      if pending is not None:
        self._read_back(bar, pending)
      pending = (last, step + n, n)
      position, step = position + n, step + n
      every = config.checkpoint_every_steps
      crossed = every and (step // every) > ((step - n) // every)
      if (crossed and position < self.steps_per_epoch) or self.stop.received:
        self._check_finite(jax.device_get(last), step)
        self.ckpt.save(step, {'state': state, 'sums': sums}, self.task.meta)
      if self.stop.received:
        self.ckpt.wait()
        bar.close()
        raise Interrupted(f'{self.stop.received}: saved a checkpoint at step {step} (epoch '
                          f'{epoch + 1}, {position}/{self.steps_per_epoch}); run the same '
                          'command to resume.')
    self._read_back(bar, pending)
    bar.close()
    return state, sums, step

  def _read_back(self, bar, pending: tuple) -> None:
    """Waits for a chunk's last metrics (the loop's one read-back per chunk), checks them and
    advances the bar, with those losses in its postfix."""
    last, step, n = pending
    last = jax.device_get(last)
    self._check_finite(last, step)
    metrics_logging.show_running(bar, last)
    bar.update(n)

  def _end_epoch(self, state: Any, sums: Metrics, epoch: int, step: int, start: float):
    """Schedule update, held-out metrics, the epoch's line, logs, pictures and checkpoint
    (`start`: when the epoch's training began in this process)."""
    train_metrics = means(sums)
    self._check_finite(train_metrics, step)
    state = self.task.end_epoch(state, train_metrics)
    eval_start = time.perf_counter()
    eval_metrics = self.hooks.evaluate(state)
    shown = {k: eval_metrics[k] for k in self.hooks.console_metrics or eval_metrics
             if k in eval_metrics}
    console.say(metrics_logging.epoch_line(
        metrics_logging.experiment_name(self.task.meta), epoch + 1, self.config.num_epochs,
        train_metrics, shown, eval_start - start, time.perf_counter() - eval_start))
    self.logger.scalars(step, {**{f'train_{k}': v for k, v in train_metrics.items()},
                               **eval_metrics}, epoch=epoch + 1)
    self.hooks.report(state, epoch, self.logger)
    sums = jax.tree.map(jnp.zeros_like, sums)
    self.ckpt.save(step, {'state': state, 'sums': sums}, self.task.meta,
                   eval_metrics or train_metrics)
    return state, sums

  def _check_finite(self, metrics: dict, step: int) -> None:
    # Any seed of a seed batch diverging stops the batch: its seeds share one program.
    bad = {k: v for k, v in metrics.items() if not np.all(np.isfinite(v))}
    if bad:
      last = self.ckpt.latest_step()
      kept = f'the last good checkpoint (step {last}) is kept' if last else 'no checkpoint was saved'
      raise TrainingDiverged(f'training diverged: {", ".join(f"{k}={v}" for k, v in bad.items())} '
                             f'by step {step}; {kept}. Lower the learning rate or change the seed.')


def train(task: TrainTask, config, ckpt: Checkpointer, logger: MetricLogger,
          hooks: EpochHooks = EpochHooks()) -> Any:
  """Runs (or resumes) `task` to `config.num_epochs` (see `Trainer`); returns the final state."""
  return Trainer(task, config, ckpt, logger, hooks).run()


def train_in_workdir(task: TrainTask, config, workdir: Path, hooks: EpochHooks = EpochHooks(),
                     best_metric: str = '', best_mode: str = 'min') -> Any:
  """`train` with checkpoints in `<workdir>/checkpoints` and logs in `workdir`.

  `best_metric` (a key of `hooks.evaluate`'s metrics) keeps the best checkpoint besides the latest.
  """
  ckpt = Checkpointer(Path(workdir) / 'checkpoints', config.keep_checkpoints, best_metric, best_mode)
  logger = MetricLogger(workdir)
  try:
    return train(task, config, ckpt, logger, hooks)
  finally:
    logger.close()
    ckpt.close()
