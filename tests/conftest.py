"""Shared fixtures: tiny data sets written by the tests, and a way to run the launcher.

The suite runs on CPU wherever it is started, a GPU or TPU host included: JAX_PLATFORMS is set
here, before any test module imports JAX, and launched processes inherit it. The tests marked
`accelerator` (`python -m pytest -m accelerator`) launch on the default backend instead.

Two tiers: the default run leaves out the tests marked `long` (whole training runs, injected
faults, device counts, several processes, the notebook, the docs' commands, anything over a few
seconds); `python -m pytest -m long` runs them, and `.ci/run` runs both.
"""

import os
import subprocess
import sys
from pathlib import Path

os.environ['JAX_PLATFORMS'] = 'cpu'
DEFAULT_BACKEND = {'JAX_PLATFORMS': ''}  # For `launch(..., env=DEFAULT_BACKEND)`: JAX's choice.

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _real_sms_root() -> Path | None:
  """The data root holding the real SMSSpamCollection: $AML2_DATA_DIR, else the repo's data/."""
  for root in (os.environ.get('AML2_DATA_DIR'), REPO / 'data'):
    if root and (Path(root) / 'sms_spam' / 'SMSSpamCollection').is_file():
      return Path(root)
  return None


REAL_ROOT = _real_sms_root()
needs_real = pytest.mark.skipif(
    REAL_ROOT is None, reason='real SMS data not found: set AML2_DATA_DIR to a data root with '
    'sms_spam/SMSSpamCollection (e.g. /path/to/data)')


@pytest.fixture(name='repo_data')
def fixture_repo_data(monkeypatch, tmp_path):
  """Points the repo's data folder into tmp_path and clears $AML2_DATA_DIR."""
  from aml2_jax.datasets import files as data_files
  monkeypatch.delenv(data_files.ENV_VAR, raising=False)
  repo_data = tmp_path / 'repo_data'
  monkeypatch.setattr(data_files, 'REPO_DATA_DIR', repo_data)
  return repo_data


@pytest.fixture(scope='session')
def tiny_fmnist_root(tmp_path_factory) -> Path:
  """A data root with a tiny Fashion-MNIST in the Kaggle CSV format: 640 train, 200 test images.

  Each class is a distinct blob pattern plus noise, so a classifier can learn it in a few steps.
  """
  root = tmp_path_factory.mktemp('fmnist_root')
  folder = root / 'fashion_mnist'
  folder.mkdir()
  rng = np.random.default_rng(0)
  prototypes = rng.integers(0, 256, (10, 784))
  for name, num in (('fashion-mnist_train.csv', 640), ('fashion-mnist_test.csv', 200)):
    labels = np.arange(num) % 10
    pixels = np.clip(prototypes[labels] + rng.integers(-40, 41, (num, 784)), 0, 255)
    header = 'label,' + ','.join(f'pixel{i}' for i in range(1, 785))
    rows = [','.join(map(str, [label, *row])) for label, row in zip(labels, pixels)]
    (folder / name).write_text(header + '\n' + '\n'.join(rows) + '\n')
  return root


@pytest.fixture(scope='session')
def tiny_sms_root(tmp_path_factory) -> Path:
  """A data root with a tiny SMS corpus in the Kaggle `spam.csv` format (200 messages)."""
  root = tmp_path_factory.mktemp('sms_root')
  (root / 'sms_spam').mkdir()
  rng = np.random.default_rng(0)
  spam_words, ham_words = 'win free prize cash call txt'.split(), 'ok see you lunch home later'.split()
  rows = ['v1,v2']
  for i in range(200):
    words = rng.choice(spam_words if i % 4 == 0 else ham_words, size=5)
    rows.append(f'{"spam" if i % 4 == 0 else "ham"},{" ".join(words)} m{i}')
  (root / 'sms_spam' / 'spam.csv').write_text('\n'.join(rows) + '\n', encoding='utf-8')
  return root


def launch(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
  """Runs `python launch.py ARGS` in a fresh process from the repo root (`env` adds variables)."""
  full_env = {**os.environ, **(env or {})}
  return subprocess.run([sys.executable, str(REPO / 'launch.py'), *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def devices_env(count: int) -> dict:
  """Environment of a process that sees `count` (forced) CPU devices."""
  return {'XLA_FLAGS': f'--xla_force_host_platform_device_count={count}'}


def cgan_cli_args(workdir: Path, data_root: Path, epochs: int) -> list[str]:
  """A tiny cGAN training run on the tiny data, with checkpoints every 3 steps."""
  return ['--config=configs/cgan.py:smoke', f'--workdir={workdir}', f'--config.data.dir={data_root}',
          '--noconfig.eval.after_training', f'--config.num_epochs={epochs}',
          '--config.steps_per_call=1', '--config.checkpoint_every_steps=3']


_DUMP = """
import sys, numpy as np, jax, orbax.checkpoint as ocp
from pathlib import Path
ckpt_dir = Path({ckpt_dir!r})
step = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
# No target: the saved tree comes back as nested dicts, the same for every experiment.
tree = ocp.StandardCheckpointer().restore(ckpt_dir / str(step) / 'state')
np.savez({out!r}, *[np.asarray(x) for x in jax.tree.leaves(tree)])
"""


def checkpoint_leaves(ckpt_dir: Path, tmp_path: Path, env: dict | None = None) -> list[np.ndarray]:
  """Every array of the latest train state in `ckpt_dir`, restored in a fresh process."""
  out = tmp_path / f'{abs(hash(str(ckpt_dir)))}_leaves.npz'
  code = _DUMP.format(ckpt_dir=str(Path(ckpt_dir).absolute()), out=str(out))
  subprocess.run([sys.executable, '-c', code], check=True, capture_output=True,
                 env={**os.environ, **(env or {})})
  with np.load(out) as npz:
    return [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split('_')[1]))]
