"""Interrupted runs resume exactly, for one experiment of each kind, and runs reproduce."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, checkpoint_leaves, launch

pytestmark = pytest.mark.long  # Whole training runs, killed and resumed.

COMMON = ['--config.steps_per_call=1', '--config.checkpoint_every_steps=3']


def _kind_args(kind: str, roots: dict) -> tuple[list[str], str]:
  """(launcher args, the run's folder inside the workdir) for a small run of each kind."""
  if kind == 'classifier':
    return ['--config=configs/spam_lstm.py:smoke', f'--config.data.dir={roots["sms"]}',
            '--config.num_epochs=6'], 'seed_0'
  if kind == 'text_generator':
    if not os.environ.get('AML2_DATA_DIR'):
      pytest.skip('needs AML2_DATA_DIR (the real SMS corpus)')
    return ['--config=configs/textgen_lstm.py:smoke', '--config.num_epochs=4'], ''
  return ['--config=configs/cgan.py:smoke', f'--config.data.dir={roots["fmnist"]}',
          '--noconfig.eval.after_training', '--config.num_epochs=3'], ''


@pytest.mark.parametrize('kind', ['classifier', 'text_generator', 'gan'])
def test_killed_mid_epoch_resumes_to_identical_state_and_metrics(kind, tiny_sms_root,
                                                                 tiny_fmnist_root, tmp_path):
  """SIGKILL right after the first mid-epoch checkpoint; the restart must end with exactly the
  params, optimizer state and metrics of a run that was never interrupted."""
  args, run = _kind_args(kind, {'sms': tiny_sms_root, 'fmnist': tiny_fmnist_root})
  straight, killed = tmp_path / 'straight', tmp_path / 'killed'
  done = launch(*args, *COMMON, f'--workdir={straight}')
  assert done.returncode == 0, done.stderr[-2000:]
  proc = subprocess.Popen([sys.executable, str(REPO / 'launch.py'), *args, *COMMON,
                           f'--workdir={killed}'], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  first = killed / run / 'checkpoints' / '3'
  deadline = time.time() + 300
  while not first.is_dir() and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  final_step = max(int(p.name) for p in (straight / run / 'checkpoints').iterdir() if p.name.isdigit())
  saved = [int(p.name) for p in (killed / run / 'checkpoints').iterdir() if p.name.isdigit()]
  assert max(saved) < final_step, 'the run finished before it was killed: nothing was resumed'
  resumed = launch(*args, *COMMON, f'--workdir={killed}')
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  for a, b in zip(checkpoint_leaves(straight / run / 'checkpoints', tmp_path),
                  checkpoint_leaves(killed / run / 'checkpoints', tmp_path), strict=True):
    np.testing.assert_array_equal(a, b)
  last = lambda d: json.loads((d / run / 'metrics.jsonl').read_text().splitlines()[-1])
  assert last(straight) == last(killed)


def _without_timings(record):
  if isinstance(record, dict):
    return {k: _without_timings(v) for k, v in record.items() if 'wall' not in k}
  return record


def test_two_runs_of_one_config_give_identical_results(tiny_sms_root, tmp_path):
  args = ['--config=configs/spam_rnn.py:smoke', f'--config.data.dir={tiny_sms_root}']
  results = []
  for name in ('a', 'b'):
    done = launch(*args, f'--workdir={tmp_path / name}')
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / name / 'results.json').read_text())
    results.append(_without_timings(record))
  assert results[0] == results[1]
  assert results[0]['test_accuracy'] > 0  # Metrics were compared, not only timings dropped.
