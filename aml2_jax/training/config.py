"""Fields every experiment config shares (all the training loop reads), their checks, and loading
config files from code. Each `configs/<name>.py` starts from `base_config(...)`."""

import importlib
import sys
from pathlib import Path

import jax
import ml_collections

from aml2_jax.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / 'configs'


def base_config(experiment: str) -> ml_collections.ConfigDict:
  """Returns the fields every experiment has, with their defaults."""
  config = ml_collections.ConfigDict()
  config.experiment = experiment  # Which `aml2_jax/<experiment>/` package runs this config.
  config.seed = 0  # One seed for init, data order, dropout and noise: same seed, same run.
  config.num_epochs = 10  # Passes over the training set.
  config.batch_size = 32  # Global batch, split over the devices when there are several.
  config.num_devices = 1  # Devices the data-parallel mesh spans; 0 = all, of all processes.
  config.steps_per_call = 0  # Train steps fused into one jit call (lax.scan); 0 = per backend.
  # What speed fields set to 0 take on each backend. The CPU values were measured on a 2-core
  # CPU; the GPU and TPU values are estimates until the accelerator check measures them.
  config.backend_defaults = ml_collections.ConfigDict(dict(
      steps_per_call=dict(cpu=16, gpu=64, tpu=64),  # Hides dispatch; more for faster devices.
      unroll=dict(cpu=1, gpu=8, tpu=8),  # Time steps per scan iteration of recurrent layers.
  ))
  config.checkpoint_every_steps = 0  # Extra mid-epoch checkpoints; 0 = only at epoch ends.
  config.keep_checkpoints = 2  # Latest checkpoints kept (the best one is kept besides).
  config.data = ml_collections.ConfigDict()
  config.data.dir = ''  # Data root (holding sms_spam/, fashion_mnist/); '' = look it up.
  return config


def load_config(name: str, variant: str = '') -> ml_collections.ConfigDict:
  """`get_config(variant)` of `configs/<name>.py`, as the launcher's `--config` flag loads it."""
  if str(REPO_ROOT) not in sys.path:  # `configs` is a package at the repository root.
    sys.path.insert(0, str(REPO_ROOT))
  return importlib.import_module(f'configs.{name}').get_config(variant)


def per_backend(config: ml_collections.ConfigDict, name: str, value: int) -> int:
  """`value` when set (> 0), else `config.backend_defaults[name]` for the current backend."""
  backend = {'cuda': 'gpu', 'rocm': 'gpu'}.get(jax.default_backend(), jax.default_backend())
  return value if value > 0 else config.backend_defaults[name][backend]


def check_positive(config: ml_collections.ConfigDict, *names: str) -> None:
  """Refuses a config whose named (dotted) fields are not positive numbers."""
  for name in names:
    value = config[name]
    if value <= 0:
      raise UserError(f'config.{name} is {value}: it must be > 0 (set --config.{name}=...).')


def check_non_negative(config: ml_collections.ConfigDict, *names: str) -> None:
  """Refuses a config whose named (dotted) fields are negative."""
  for name in names:
    if config[name] < 0:
      raise UserError(f'config.{name} must be >= 0 (set --config.{name}=...).')


def check_fraction(config: ml_collections.ConfigDict, name: str, allow_zero: bool = True) -> None:
  """Refuses a dotted config field that is not in [0, 1) (or (0, 1) without allow_zero)."""
  value = config[name]
  if not ((value >= 0 if allow_zero else value > 0) and value < 1):
    bounds = '[0, 1)' if allow_zero else '(0, 1)'
    raise UserError(f'config.{name} is {value}: it must be in {bounds} (set --config.{name}=...).')


def check_choice(config: ml_collections.ConfigDict, name: str, choices: tuple[str, ...]) -> None:
  """Refuses a dotted config field whose value is not one of `choices`."""
  value = config[name]
  if value not in choices:
    raise UserError(f'config.{name} is {value!r}: use one of {", ".join(choices)}.')


def check_base(config: ml_collections.ConfigDict) -> None:
  """Checks the shared fields; experiments call this first in their own check."""
  check_positive(config, 'num_epochs', 'batch_size', 'keep_checkpoints')
  check_non_negative(config, 'num_devices', 'steps_per_call')
  if config.checkpoint_every_steps < 0:
    raise UserError('config.checkpoint_every_steps must be >= 0 (0 = only at epoch ends).')
