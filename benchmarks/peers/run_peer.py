"""Times one peer's train step and prints one JSON line.

  python -m benchmarks.peers.run_peer --framework={torch,torch_compile,keras_jax} --model=NAME \
      [--seconds=5] [--repeats=3]

Builds the model on its synthetic batch (fixed seed), checks its parameter count against the
Keras-layout count in specs.py, runs two steps (compilation or tracing included: `compile_s`) and
an untimed warm-up, then times `repeats` runs of back-to-back steps lasting at least `seconds`
each, waiting for the last step's result at the end of each run. `ms_per_step` is the median.
A combination that fails prints {"framework", "model", "error"} and still exits 0, so a driver
looping over combinations keeps going. Run one combination per process: frameworks and XLA
keep their threads, caches and compiled code for the life of the process.

Time on an idle machine: under CPU contention PyTorch's OpenMP spin-waits made its steps up to
10-100x slower here (see torch_models.py; OMP_WAIT_POLICY=PASSIVE helps), and JAX's up to 3x.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from benchmarks.peers import specs

FRAMEWORKS = ('torch', 'torch_compile', 'keras_jax')
_inductor_cache = None


def load(framework: str, model: str):
  """(peer, wait, version): wait(result) returns once that step's result exists."""
  if framework == 'keras_jax':
    from benchmarks.peers import keras_models
    return keras_models.build(model), lambda out: out.block_until_ready(), keras_models.version()
  if framework == 'torch_compile' and 'TORCHINDUCTOR_CACHE_DIR' not in os.environ:
    # A cold compile, as JAX's is (no persistent cache): inductor otherwise reuses the kernels an
    # earlier run left in /tmp and compile_s drops from ~20 s to under 1 s. Read at torch's import.
    global _inductor_cache
    _inductor_cache = tempfile.TemporaryDirectory(prefix='peer_inductor_')  # Removed at exit.
    os.environ['TORCHINDUCTOR_CACHE_DIR'] = _inductor_cache.name
  from benchmarks.peers import torch_models
  # PyTorch on the CPU has finished a step when the call returns.
  return torch_models.build(model, framework == 'torch_compile'), lambda out: out, torch_models.version()


def timed_steps(peer, wait, seconds: float) -> tuple:
  """Back-to-back steps for at least `seconds`; returns (steps, elapsed seconds)."""
  steps, start, out = 0, time.perf_counter(), None
  while steps == 0 or time.perf_counter() - start < seconds:
    out = peer.step(*peer.batch)
    steps += 1
  wait(out)
  return steps, time.perf_counter() - start


def run(framework: str, model: str, seconds: float, repeats: int) -> dict:
  peer, wait, version = load(framework, model)
  if peer.num_params != specs.EXPECTED_PARAMS[model]:
    raise ValueError(f'{peer.num_params:,} parameters, expected {specs.EXPECTED_PARAMS[model]:,}')
  start = time.perf_counter()
  for _ in range(2):  # A compiled step may specialise again on its second call.
    wait(peer.step(*peer.batch))
  compile_s = time.perf_counter() - start
  timed_steps(peer, wait, min(seconds, 1.0))  # Warm caches and allocators, untimed.
  runs_ms = []
  for _ in range(repeats):
    steps, elapsed = timed_steps(peer, wait, seconds)
    runs_ms.append(elapsed / steps * 1000)
  ms = statistics.median(runs_ms)
  record = {'framework': framework, 'model': model, 'batch_size': peer.batch_size,
            'num_params': peer.num_params, 'ms_per_step': round(ms, 3),
            'repeats_ms': [round(t, 3) for t in runs_ms],
            'samples_per_s': round(peer.batch_size / (ms / 1000), 1),
            'compile_s': round(compile_s, 2), 'version': version}
  if peer.note:
    record['note'] = peer.note
  return record


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', required=True, choices=FRAMEWORKS)
  parser.add_argument('--model', required=True, choices=specs.MODELS)
  parser.add_argument('--seconds', type=float, default=5.0, help='Minimum length of one timed run.')
  parser.add_argument('--repeats', type=int, default=3, help='Timed runs; the median is reported.')
  args = parser.parse_args(argv)
  try:
    record = run(args.framework, args.model, args.seconds, max(1, args.repeats))
  except Exception as e:  # noqa: BLE001 -- any failure is a result of the comparison.
    error = ' '.join(f'{type(e).__name__}: {e}'.split())[:500]
    record = {'framework': args.framework, 'model': args.model, 'error': error}
  print(json.dumps(record))
  sys.stdout.flush()


if __name__ == '__main__':
  main()
