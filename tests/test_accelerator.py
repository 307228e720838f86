"""Short runs on the default backend (GPU or TPU): `python -m pytest -m accelerator`.

Deselected in the ordinary suite, which runs on CPU. Each experiment trains its smoke config on
the accelerator and on CPU with the plain ops (`--config.model.ops=plain` where a model has fast
paths, so both backends compute the same thing) and the same seed; the losses must agree within
a tolerance, not bit for bit (TF32 matmuls, other reduction orders), and inference must run.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import DEFAULT_BACKEND, launch
from test_portability import _kind

pytestmark = pytest.mark.accelerator


@pytest.fixture(name='backend', scope='module')
def fixture_backend() -> str:
  code = 'import jax; print(jax.default_backend())'
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        env={**os.environ, **DEFAULT_BACKEND}, check=True)
  backend = done.stdout.strip()
  if backend == 'cpu':
    pytest.skip('no GPU or TPU: JAX\'s default backend here is the CPU')
  return backend


@pytest.mark.parametrize('kind', ['cgan', 'spam', 'textgen'])
def test_short_training_and_inference_agree_with_cpu(kind, backend, tiny_sms_root,
                                                     tiny_fmnist_root, tmp_path):
  spec = _kind(kind, {'sms': tiny_sms_root, 'fmnist': tiny_fmnist_root})
  plain = ['--config.model.ops=plain'] if kind == 'cgan' else []
  finals = {}
  for name, env in (('accelerator', DEFAULT_BACKEND), ('cpu', None)):
    workdir = tmp_path / name
    done = launch(*spec['args'], *plain, f'--workdir={workdir}', env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'{backend if name == "accelerator" else "cpu"} devices' in done.stdout
    lines = (workdir / spec['run'] / 'metrics.jsonl').read_text().splitlines()
    finals[name] = json.loads(lines[-1])
    inferred = launch(*spec['args'], *spec['infer'], f'--workdir={workdir}', env=env)
    assert inferred.returncode == 0, inferred.stderr[-3000:]
  for key, value in finals['cpu'].items():
    if key.startswith('train_') and 'norm' not in key:
      assert finals['accelerator'][key] == pytest.approx(value, rel=0.05, abs=0.02), key
