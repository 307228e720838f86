"""Training-speed benchmark of every model, each timing the experiment's own jitted train chunk in
a fresh process: `python -m aml2_jax.bench [--models=..] [--peers] [--out=FILE]`. What each field
means: docs/performance.md."""

import json
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

_MODELS = flags.DEFINE_list('models', ['spam_rnn', 'spam_lstm', 'textgen_rnn', 'textgen_lstm',
                                       'cgan'], 'Models (config names) to benchmark.')
_OUT = flags.DEFINE_string('out', '', 'Write the JSON list here too.')
_TINY = flags.DEFINE_bool('tiny', False, 'Short repeats, and smoke configs unless --peers (tests).')
_VARIANT = flags.DEFINE_string('variant', '', 'Internal: the config variant a child benchmarks.')
_CHILD = flags.DEFINE_string('child', '', 'Internal: benchmark this one model and print JSON.')
_PEERS = flags.DEFINE_bool('peers', False, 'Also time the PyTorch and Keras peers, side by side '
                           '(needs requirements-peers.txt); writes one JSON of all of them.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'With --peers: interleaved rounds (medians kept).')
_SECONDS = flags.DEFINE_float('seconds', 5.0, 'Minimum length of one timed run.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs per measurement (the median is kept).')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Also time this many seeds in one program for the '
                              'models of SEED_BATCH_MODELS (0 or 1: skip).')

# config name -> the dominant matmul [m, k, n] of its train step at the config's batch size.
MODELS = {
    'spam_rnn': (32, 32, 32),  # Recurrent step: [batch, units] @ [units, units].
    'spam_lstm': (32, 32, 128),  # [batch, units] @ [units, 4 units].
    'textgen_rnn': (128, 278, 278),
    'textgen_lstm': (128, 128, 512),
    'cgan': (128, 784, 1024),  # D's first layer (images) on real + fake.
}
SEED_BATCH_MODELS = ('spam_rnn', 'spam_lstm')  # Can train several seeds in one program.


def matmul_gflops(m: int, k: int, n: int, seconds: float) -> float:
  """The machine's f32 matmul rate at one shape (best of repeated timed runs)."""
  import jax
  import jax.numpy as jnp
  a, b = jnp.ones((m, k)), jnp.ones((k, n))
  # Several independent products per call, so dispatch does not dominate tiny shapes.
  reps = max(1, int(2e8 // (2 * m * k * n)))
  f = jax.jit(lambda a, b: jax.lax.fori_loop(0, reps, lambda i, acc: acc + (a + i) @ b,
                                             jnp.zeros((m, n))))
  f(a, b).block_until_ready()
  best, deadline = float('inf'), time.perf_counter() + seconds
  while time.perf_counter() < deadline:
    start = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * m * k * n * reps / best / 1e9


def peak_memory_mb() -> tuple[str, float]:
  """('host_rss' or 'device', peak MB): the process's RSS on CPU, the device's peak on GPU/TPU."""
  import jax
  stats = jax.local_devices()[0].memory_stats() if jax.default_backend() != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return 'device', stats['peak_bytes_in_use'] / 2**20
  return 'host_rss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_flops(experiment, config, data) -> float:
  """XLA's FLOP count of one train step, with any recurrent scan fully unrolled for counting."""
  import jax
  import jax.numpy as jnp
  counting = config.copy_and_resolve_references()
  if 'unroll' in counting.get('model', {}):
    counting.unlock()
    counting.model.unroll = 1 << 12  # More than any sequence length: every step counted.
  task = experiment.build_task(counting, data)
  batch_idx = jnp.zeros((config.batch_size,), jnp.int32)
  cost = jax.jit(task.train_step).lower(task.state, task.data, batch_idx).cost_analysis()
  return float(cost['flops'])


def time_chunks(task, config, seconds: float, repeats: int) -> tuple[float, list[float], int]:
  """(compile s, ms per step of each timed run, steps per call) of `task`'s jitted train chunk,
  driven as the `Trainer` drives it (a seed batch's steps count once for all its seeds)."""
  import jax
  from aml2_jax.training import loop as train_loop
  trainer = train_loop.Trainer(task, config)  # Its setup only: no checkpoints, no logs.
  state, sums = trainer.start()
  data, order = trainer.data, trainer.epoch_order(0)
  n = min(trainer.steps_per_call, len(order))
  batch = lambda i: trainer.batch_idx(order, (i * n) % (len(order) - n + 1), n)

  start = time.perf_counter()
  compiled = trainer.train_chunk.lower(state, sums, data, batch(0)).compile()
  compile_s = time.perf_counter() - start
  state, sums, last = compiled(state, sums, data, batch(0))  # Warm-up.
  jax.block_until_ready(last)
  step_ms = []
  for _ in range(repeats):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      state, sums, last = compiled(state, sums, data, batch(calls))
      calls += 1
    jax.block_until_ready(last)
    step_ms.append((time.perf_counter() - start) / (calls * n) * 1000)
  return compile_s, step_ms, n


def with_seeds(record: dict, variant: str, num_seeds: int, seconds: float, repeats: int) -> dict:
  """`record` with the timing of `num_seeds` seeds, each on its own split (as `config.num_seeds`
  trains them), stacked into one vmapped program, and its ratio to N runs one after another."""
  from aml2_jax import experiment as experiment_lib
  from aml2_jax.spam import seeds as spam_seeds
  from aml2_jax.training import seed_batch
  from aml2_jax.training.config import load_config
  config = load_config(record['model'], variant)
  config.num_seeds = num_seeds
  experiment = experiment_lib.get(config.experiment)
  runs = spam_seeds.run_configs(config)
  tasks = [experiment.build_task(run, experiment.load_data(run)) for run in runs]
  task = seed_batch.stack_tasks(tasks, [run.seed for run in runs])
  compile_s, step_ms, _ = time_chunks(task, config, seconds, repeats)
  one_program = round(num_seeds / (statistics.median(step_ms) / 1000), 1)
  # N runs one after another take N times as long for N times the steps: one seed's step rate.
  sequential = 1000 / record['ms_per_step']
  return {**record, 'seeds': num_seeds, 'seeds_compile_s': round(compile_s, 2),
          'seeds_ms_per_step': round(statistics.median(step_ms), 3),
          'seed_steps_per_s_one_program': one_program,
          'seeds_repeats_ms': [round(t, 3) for t in step_ms],
          'seed_steps_per_s_sequential': round(sequential, 1),
          'seeds_speedup': round(one_program / sequential, 2)}


def bench_one(name: str, variant: str, seconds: float, repeats: int) -> dict:
  """Benchmarks one model in this process; returns its JSON record."""
  import jax
  from aml2_jax import experiment as experiment_lib
  from aml2_jax.training.config import load_config
  config = load_config(name, variant)
  experiment = experiment_lib.get(config.experiment)
  data = experiment.load_data(config)
  task = experiment.build_task(config, data)
  compile_s, step_ms, n = time_chunks(task, config, seconds, repeats)
  ms = statistics.median(step_ms)
  memory_kind, memory_mb = peak_memory_mb()  # Before the matmul probes add their own.
  flops = step_flops(experiment, config, data)
  peak = matmul_gflops(*MODELS[name], seconds=min(seconds, 2.0))
  size = 2048 if jax.default_backend() == 'cpu' else 8192  # A large square matmul: the device's.
  large = matmul_gflops(size, size, size, seconds=min(seconds, 2.0))
  achieved = flops / (ms / 1000) / 1e9
  return {'model': name, 'batch_size': config.batch_size, 'steps_per_call': n,
          'compile_s': round(compile_s, 2), 'ms_per_step': round(ms, 3),
          'samples_per_s': round(config.batch_size / (ms / 1000), 1),
          'peak_memory_mb': round(memory_mb, 1), 'memory_kind': memory_kind,
          'flops_per_step': flops, 'achieved_gflops': round(achieved, 2),
          'peak_gflops': round(peak, 2), 'utilisation': round(achieved / peak, 3),
          'large_matmul_gflops': round(large, 2),
          'utilisation_of_large_matmul': round(achieved / large, 3),
          'platform': jax.default_backend(), 'device': jax.devices()[0].device_kind,
          'repeats_ms': [round(t, 3) for t in step_ms]}


def print_table(records: list[dict]) -> None:
  print(f'{"model":<14}{"batch":>6}{"compile s":>10}{"ms/step":>10}{"samples/s":>11}'
        f'{"mem MB":>8}{"GFLOP/s":>9}{"shape pk":>9}{"util":>6}{"large pk":>9}{"util":>6}')
  for r in records:
    print(f'{r["model"]:<14}{r["batch_size"]:>6}{r["compile_s"]:>10.1f}{r["ms_per_step"]:>10.2f}'
          f'{r["samples_per_s"]:>11,.0f}{r["peak_memory_mb"]:>8.0f}{r["achieved_gflops"]:>9.1f}'
          f'{r["peak_gflops"]:>9.1f}{r["utilisation"]:>6.2f}{r["large_matmul_gflops"]:>9.1f}'
          f'{r["utilisation_of_large_matmul"]:>6.2f}')
  for r in records:
    if 'seeds' in r:
      print(f'{r["model"]}: {r["seeds"]} seeds in one program '
            f'{r["seed_steps_per_s_one_program"]:,.0f} seed-steps/s, one after another '
            f'{r["seed_steps_per_s_sequential"]:,.0f}: {r["seeds_speedup"]:.2f}x')


def main(argv):
  del argv
  if _CHILD.value:
    seconds, repeats = _timing()
    record = bench_one(_CHILD.value, _VARIANT.value, seconds, repeats)
    if _SEEDS.value > 1 and _CHILD.value in SEED_BATCH_MODELS:
      record = with_seeds(record, _VARIANT.value, _SEEDS.value, seconds, repeats)
    print(json.dumps(record))
    return
  unknown = [m for m in _MODELS.value if m not in MODELS]
  if unknown:
    sys.exit(f'error: unknown models {unknown}; choose from {", ".join(MODELS)}')
  if _PEERS.value:
    from aml2_jax import peers  # pylint: disable=g-import-not-at-top
    # The peers' batch sizes are the full configs': ours runs those too, even with --tiny.
    output = peers.side_by_side(_MODELS.value, _ROUNDS.value,
                                lambda name: run_child(name, variant=''), *_timing())
    peers.print_comparison(output)
  else:
    output = [run_child(name) for name in _MODELS.value]
    print_table(output)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(output, f, indent=2)


def _timing() -> tuple[float, int]:
  """(seconds per timed run, runs): short with --tiny."""
  return (0.2, 3) if _TINY.value else (_SECONDS.value, _REPEATS.value)


def run_child(name: str, variant: str | None = None) -> dict:
  """One model's record, measured in a fresh process (so its peak memory is its own)."""
  if variant is None:
    variant = 'smoke' if _TINY.value else ''
  args = [sys.executable, '-m', 'aml2_jax.bench', f'--child={name}', f'--variant={variant}']
  args += ['--tiny'] if _TINY.value else [f'--seconds={_SECONDS.value}',
                                          f'--repeats={_REPEATS.value}']
  args += [f'--seeds={_SEEDS.value}']
  result = subprocess.run(args, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f'error: benchmarking {name} failed:\n{result.stderr[-3000:]}')
  record = json.loads(result.stdout.strip().splitlines()[-1])
  print(f'{name}: {record["ms_per_step"]:.2f} ms/step', file=sys.stderr)
  return record


if __name__ == '__main__':
  app.run(main)
