"""This project's train steps side by side with the PyTorch and Keras peers of
`benchmarks/peers/`, each in a fresh process, in an order that rotates every round (how and why:
docs/performance.md). Needs `pip install -r requirements-peers.txt`."""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS = ('torch', 'torch_compile', 'keras_jax')
OURS = 'aml2_jax'
# What only our records hold (medians over rounds kept): the utilisation columns and the seeds'
# one-program throughput (see `aml2_jax.bench`).
OURS_ONLY = ('utilisation', 'utilisation_of_large_matmul', 'achieved_gflops', 'peak_gflops',
             'large_matmul_gflops', 'seeds', 'seeds_ms_per_step', 'seed_steps_per_s_one_program',
             'seed_steps_per_s_sequential', 'seeds_speedup')


def run_peer(framework: str, model: str, seconds: float, repeats: int) -> dict:
  """One peer's record (`benchmarks/peers/run_peer.py`), timed in a fresh process."""
  args = [sys.executable, '-m', 'benchmarks.peers.run_peer', f'--framework={framework}',
          f'--model={model}', f'--seconds={seconds}', f'--repeats={repeats}']
  done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True)
  lines = done.stdout.strip().splitlines()
  if done.returncode or not lines:
    return {'framework': framework, 'model': model, 'error': done.stderr.strip()[-300:]}
  return json.loads(lines[-1])


def machine() -> dict:
  """What the comparison ran on (the fields the published JSON has always had)."""
  from aml2_jax.runtime import run_record  # pylint: disable=g-import-not-at-top
  return {'cpu': run_record.cpu_model(), 'cores': os.cpu_count(),
          'date_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
          'git_commit': run_record.git_state(REPO_ROOT)['commit'] or '',
          'python': platform.python_version(), 'load_average_at_start': os.getloadavg()[0]}


def side_by_side(models: list[str], rounds: int, run_ours: Callable[[str], dict],
                 seconds: float, repeats: int) -> dict:
  """Every implementation of every model, interleaved over `rounds`; medians and ratios."""
  implementations = (OURS,) + PEERS
  runs = {model: {impl: [] for impl in implementations} for model in models}
  for r in range(rounds):
    order = implementations[r % len(implementations):] + implementations[:r % len(implementations)]
    for model in models:
      for impl in order:
        record = run_ours(model) if impl == OURS else run_peer(impl, model, seconds, repeats)
        runs[model][impl].append(record)
        shown = record.get('ms_per_step', record.get('error', '?'))
        print(f'round {r + 1}/{rounds} {model} {impl}: {shown} ms/step', file=sys.stderr,
              flush=True)
  return {'machine': machine(), 'rounds': rounds,
          'models': {model: _summarise(runs[model]) for model in models}}


def _summarise(by_impl: dict[str, list[dict]]) -> dict:
  """Median ms/step per implementation, the fastest peer and the ratio to it."""
  summary = {}
  for impl, records in by_impl.items():
    times = [r['ms_per_step'] for r in records if 'ms_per_step' in r]
    errors = [r['error'] for r in records if 'error' in r]
    batch_size = next((r['batch_size'] for r in records if 'batch_size' in r), None)
    mine = summary[impl] = {'ms_per_step': round(statistics.median(times), 3) if times else None,
                            'rounds_ms': times, 'batch_size': batch_size}
    if errors:
      mine['error'] = errors[0]
    for key in OURS_ONLY:
      values = [r[key] for r in records if key in r]
      if values:
        mine[key] = round(statistics.median(values), 3)
    if times and batch_size:
      mine['samples_per_s'] = round(batch_size / mine['ms_per_step'] * 1000, 1)
  peers = {p: summary[p]['ms_per_step'] for p in PEERS if summary[p]['ms_per_step']}
  if peers and summary[OURS]['ms_per_step']:
    fastest = min(peers, key=peers.get)
    summary['fastest_peer'] = fastest
    summary['speedup_over_fastest_peer'] = round(peers[fastest] / summary[OURS]['ms_per_step'], 3)
  return summary


def print_comparison(result: dict) -> None:
  """The medians as a table on stdout."""
  print(f'{"model":<14}' + ''.join(f'{impl:>15}' for impl in (OURS,) + PEERS) + f'{"speed-up":>10}')
  for model, s in result['models'].items():
    cells = ''.join(f'{s[impl]["ms_per_step"] or float("nan"):>15.2f}' for impl in (OURS,) + PEERS)
    print(f'{model:<14}{cells}{s.get("speedup_over_fastest_peer", float("nan")):>9.2f}x')
