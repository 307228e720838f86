"""The training loop every experiment shares: a `Trainer` runs a `TrainTask` in jitted step chunks,
resumable to the step (docs/reliability.md), calling `EpochHooks` after each epoch."""

import contextlib
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
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.checkpointing import Checkpointer


@dataclasses.dataclass
class TrainTask:
  """What is trained (and what the benchmark times)."""
  state: Any  # The initial train state; its `step` counts train steps.
  # Pure `(state, data, batch_idx [batch]) -> (state, metrics)`: scalar means, 'loss' among them.
  train_step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
  data: Any  # Arrays (on host or device) that `train_step` indexes with `batch_idx`.
  num_examples: int  # batch_idx values are in [0, num_examples).
  end_epoch: Callable[[Any, dict], Any] = lambda state, metrics: state  # E.g. a plateau.
  meta: dict = dataclasses.field(default_factory=dict)  # Saved with every checkpoint.
  compiler_options: dict = dataclasses.field(default_factory=dict)  # XLA options of the chunk.
  seeds: tuple[int, ...] = ()  # A seed batch's seeds (`seed_batch`); () for one run.


@dataclasses.dataclass(frozen=True)
class EpochHooks:
  """What a run observes after every epoch (metrics, pictures, samples); none changes training."""
  evaluate: Callable[[Any], dict] = lambda state: {}  # Held-out metrics, saved with the step.
  report: Callable[[Any, int, MetricLogger], None] = lambda state, epoch, logger: None
  console_metrics: tuple[str, ...] = ()  # `evaluate`'s metrics on the epoch's line; () = all.


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; nothing after the last good checkpoint was saved."""


class Interrupted(Exception):
  """Training was stopped by a signal after saving a checkpoint."""


def epoch_order(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """Example indices of an epoch, [steps_per_epoch, batch]; the remainder is dropped."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  return order[:num_examples // batch_size * batch_size].reshape(-1, batch_size)


def make_train_chunk(train_step: Callable, compiler_options: dict | None = None) -> Callable:
  """Fuses a chunk of steps into one jitted `(state, sums, data, batch_idx [steps, batch]) ->
  (state, sums, last step's metrics)`; `sums` adds up each metric (and 'num_steps') on device."""

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
              batch_size: int | tuple[int, ...]) -> dict:
  """Zero running sums of the step's metrics (traced only); per seed for shape [seeds, batch]."""
  shape = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
  _, metrics = jax.eval_shape(train_step, state, data, jax.ShapeDtypeStruct(shape, jnp.int32))
  zeros = lambda: jnp.zeros(shape[:-1], jnp.float32)
  return {**{k: zeros() for k in metrics}, 'num_steps': zeros()}


def means(sums: dict) -> dict[str, Any]:
  """Epoch means of the running sums (one transfer): floats, or arrays [seeds] for a seed batch."""
  sums = jax.device_get(sums)
  count = np.maximum(np.asarray(sums['num_steps'], np.float64), 1.0)
  means_ = {k: np.asarray(v, np.float64) / count for k, v in sums.items() if k != 'num_steps'}
  return {k: float(v) if v.ndim == 0 else v for k, v in means_.items()}


def first_step(state: Any) -> int:
  """The step count of a state (a seed batch's seeds all share it)."""
  return int(np.ravel(jax.device_get(state.step))[0])


class Trainer:
  """One run's training; without `ckpt` and `logger`, the setup that the benchmark times."""

  def __init__(self, task: TrainTask, config, ckpt: Checkpointer | None = None,
               logger: MetricLogger | None = None, hooks: EpochHooks = EpochHooks()):
    self.task, self.config, self.ckpt, self.logger, self.hooks = task, config, ckpt, logger, hooks
    self.mesh = sharding.data_mesh(config.num_devices)
    if config.batch_size % self.mesh.size:
      raise UserError(f'config.batch_size={config.batch_size} does not split over '
                      f'{self.mesh.size} devices; use a multiple of {self.mesh.size}.')
    self.steps_per_epoch = task.num_examples // config.batch_size
    if self.steps_per_epoch == 0:
      raise UserError(f'config.batch_size={config.batch_size} is larger than the '
                      f'{task.num_examples} training examples; lower it.')
    self.steps_per_call = config_lib.per_backend(config, 'steps_per_call', config.steps_per_call)
    self.data = sharding.replicate(task.data, self.mesh)
    self.train_chunk = make_train_chunk(task.train_step, task.compiler_options)
    self.stopped = None  # SIGINT/SIGTERM, once received: the loop saves, then stops.

  def start(self) -> tuple[Any, dict]:
    """The task's initial state and zero running sums, placed on the mesh."""
    shape = (self.config.batch_size,)
    sums = zero_sums(self.task.train_step, self.task.state, self.data,
                     (len(self.task.seeds),) + shape if self.task.seeds else shape)
    return sharding.replicate((self.task.state, sums), self.mesh)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The epoch's batch indices: [steps, batch], or [steps, seeds, batch] for a seed batch."""
    # Each seed's order is the one its own run would draw, so a batched seed equals its solo run.
    orders = np.stack([epoch_order(seed, epoch, self.task.num_examples, self.config.batch_size)
                       for seed in self.task.seeds or (self.config.seed,)], 1)
    return orders if self.task.seeds else orders[:, 0]

  def batch_idx(self, order: np.ndarray, position: int, n: int) -> jax.Array:
    """Steps [position, position + n) of `order`, the batch axis (last) split over the mesh."""
    return sharding.shard_batch_axis(order[position:position + n], self.mesh, axis=-1)

  def run(self) -> Any:
    """Runs (or resumes) training to `config.num_epochs`; returns the final state."""
    console.say(f'training on {sharding.describe(self.mesh)}')
    state, sums = self._resume(*self.start())
    step = first_step(state)
    previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      for epoch in range(step // self.steps_per_epoch, self.config.num_epochs):
        start = time.perf_counter()
        state, sums, step = self._run_epoch(state, sums, epoch, step)
        state, sums = self._end_epoch(state, sums, epoch, step, start)
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)
    self.ckpt.wait()
    return state

  def _on_signal(self, signum, frame) -> None:
    if self.stopped:  # A second SIGINT/SIGTERM: stop at once.
      raise KeyboardInterrupt
    self.stopped = signal.Signals(signum).name

  def _resume(self, state: Any, sums: dict) -> tuple[Any, dict]:
    """The state and sums of the newest intact checkpoint that fits the task's meta, if any."""
    found = self.ckpt.resume({'state': state, 'sums': sums}, self.task.meta, self.mesh)
    if found is None:
      return state, sums
    latest, restored = found
    epoch, num_epochs = latest // self.steps_per_epoch, self.config.num_epochs
    where = (f'epoch {epoch + 1} of {num_epochs}' if epoch < num_epochs
             else f'all {num_epochs} epochs done')
    console.say(f'resuming from step {latest} ({where}), '
                f'checkpoint {self.ckpt.directory / str(latest)}')
    return restored['state'], restored['sums']

  def _run_epoch(self, state: Any, sums: dict, epoch: int, step: int):
    """Runs the rest of one epoch from `step`; returns (state, sums, step)."""
    order, per_epoch = self.epoch_order(epoch), self.steps_per_epoch
    position = step - epoch * per_epoch
    pending = None  # The previous chunk's last metrics: blocking on them keeps one chunk in flight.
    desc, every = f'epoch {epoch + 1}/{self.config.num_epochs}', self.config.checkpoint_every_steps
    with metrics_logging.progress_bar(per_epoch, desc, initial=position) as bar:
      while position < per_epoch:
        n = min(self.steps_per_call, per_epoch - position)
        batch_idx = self.batch_idx(order, position, n)
        state, sums, last = self.train_chunk(state, sums, self.data, batch_idx)
        if pending is not None:
          self._read_back(bar, *pending)
        pending = (last, step + n, n)
        position, step = position + n, step + n
        crossed = every and (step // every) > ((step - n) // every)
        if (crossed and position < per_epoch) or self.stopped:
          self._check_finite(jax.device_get(last), step)
          self.ckpt.save(step, {'state': state, 'sums': sums}, self.task.meta)
        if self.stopped:
          self.ckpt.wait()
          where = f'epoch {epoch + 1}, {position}/{per_epoch}'
          raise Interrupted(f'{self.stopped}: saved a checkpoint at step {step} ({where}); run '
                            'the same command to resume.')
      self._read_back(bar, *pending)
    return state, sums, step

  def _read_back(self, bar, last: dict, step: int, n: int) -> None:
    """Waits for a chunk's last metrics (one read-back per chunk), checks them, moves the bar."""
    last = jax.device_get(last)
    self._check_finite(last, step)
    metrics_logging.show_running(bar, last)
    bar.update(n)

  def _end_epoch(self, state: Any, sums: dict, epoch: int, step: int, start: float):
    """Schedule update, held-out metrics, the epoch's line, logs, pictures and checkpoint."""
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
      kept = (f'the last good checkpoint (step {last}) is kept' if last
              else 'no checkpoint was saved')
      raise TrainingDiverged(f'training diverged: {", ".join(f"{k}={v}" for k, v in bad.items())} '
                             f'by step {step}; {kept}. Lower the learning rate or change the seed.')


def train_in_workdir(task: TrainTask, config, workdir: Path, hooks: EpochHooks = EpochHooks(),
                     best_metric: str = '', best_mode: str = 'min') -> Any:
  """Runs (or resumes) `task` to `config.num_epochs` (see `Trainer`) with checkpoints in
  `<workdir>/checkpoints` (the best by `best_metric`, a key of `hooks.evaluate`'s metrics, kept
  besides the latest) and logs in `workdir`; returns the final state."""
  with (contextlib.closing(Checkpointer(Path(workdir) / 'checkpoints', config.keep_checkpoints,
                                        best_metric, best_mode)) as ckpt,
        contextlib.closing(MetricLogger(workdir)) as logger):
    return Trainer(task, config, ckpt, logger, hooks).run()
