"""A real multi-process run: two processes on 127.0.0.1 (CPU, gloo collectives) form one 4-device
mesh; plus the launcher's one-line errors for a bad cluster description."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cgan_cli_args, devices_env, launch


def _two_processes(args: list[str], port: int, timeout: int = 600) -> list[subprocess.CompletedProcess]:
  """Runs `launch.py ARGS` as processes 0 and 1 of one run, 2 CPU devices each."""
  env = {**os.environ, **devices_env(2)}
  procs = [subprocess.Popen([sys.executable, str(REPO / 'launch.py'), *args,
                             f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                             f'--process_id={i}'], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
  results = []
  for proc in procs:
    stdout, stderr = proc.communicate(timeout=timeout)
    results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
  return results


@pytest.mark.long
def test_two_processes_train_like_one_process_with_four_devices(tiny_fmnist_root, tmp_path):
  args = cgan_cli_args(tmp_path / 'two', tiny_fmnist_root, 1) + ['--config.num_devices=0']
  results = _two_processes(args, port=12391)
  for result in results:
    assert result.returncode == 0, result.stderr[-3000:]
  assert 'training on 4 of 4 cpu devices (cpu, 2 processes)' in results[0].stdout
  assert 'training on' not in results[1].stdout  # Process 1 runs silently.
  single = launch(*cgan_cli_args(tmp_path / 'one', tiny_fmnist_root, 1), '--config.num_devices=0',
                  env=devices_env(4))
  assert single.returncode == 0, single.stderr[-3000:]
  lines = {name: (tmp_path / name / 'metrics.jsonl').read_text().splitlines()
           for name in ('two', 'one')}
  assert len(lines['two']) == len(lines['one']) == 1  # Process 0 alone wrote the metrics.
  two, one = (json.loads(lines[name][0]) for name in ('two', 'one'))
  for key in ('train_d_loss', 'train_g_loss', 'train_d_real', 'train_d_fake'):
    assert two[key] == pytest.approx(one[key], rel=1e-4), key
  sampled = launch('--config=configs/cgan.py:smoke', '--mode=sample', '--labels=3',
                   '--num_per_class=2', f'--workdir={tmp_path / "two"}')
  assert sampled.returncode == 0, sampled.stderr[-3000:]  # The checkpoint restores on 1 device.
  with np.load(tmp_path / 'two' / 'samples' / 'sample.npz') as npz:
    assert npz['images'].shape == (2, 28, 28)


# The first two wait out a coordinator's timeout: long tier.
@pytest.mark.parametrize('flags, message', [
    pytest.param(['--coordinator_address=127.0.0.1:12392', '--num_processes=2', '--process_id=1',
                  '--coordinator_timeout=3'],
                 'no coordinator answered at 127.0.0.1:12392 within 3 s', marks=pytest.mark.long),
    pytest.param(['--coordinator_address=127.0.0.1:12393', '--num_processes=2', '--process_id=0',
                  '--coordinator_timeout=3'],
                 'only 1 of 2 processes started within 3 s', marks=pytest.mark.long),
    (['--coordinator_address=127.0.0.1:12394', '--num_processes=2', '--process_id=2'],
     '--process_id=2 is out of range for --num_processes=2'),
    (['--coordinator_address=127.0.0.1:12395'], 'needs all of --coordinator_address'),
    (['--config.num_devices=7'], 'config.num_devices=7 but only 4 cpu device(s) exist'),
])
def test_a_bad_cluster_description_is_one_line(flags, message, tiny_fmnist_root, tmp_path):
  result = launch(*cgan_cli_args(tmp_path / 'run', tiny_fmnist_root, 1), *flags, env=devices_env(4),
                  timeout=60)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr and 'Traceback' not in result.stderr
  assert result.stderr.count('\n') == 1
