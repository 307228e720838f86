"""The registry of experiments and the options their modes take from the command line."""

import dataclasses
import importlib
from pathlib import Path

import ml_collections

from aml2_jax.errors import UserError

# config.experiment -> the module that runs it. Each module has `check_config(config)` and
# `MODES = {mode_name: fn(config, workdir, options)}`.
EXPERIMENTS = {
    'cgan': 'aml2_jax.cgan',
    'fmnist_classifier': 'aml2_jax.fmnist_classifier',
    'spam': 'aml2_jax.spam',
    'textgen': 'aml2_jax.textgen',
}


@dataclasses.dataclass(frozen=True)
class ModeOptions:
  """Command-line options of the experiment-specific modes (`launch.py --help` lists them)."""
  text: tuple[str, ...] = ()  # predict: messages given on the command line.
  input: str = ''  # predict: a UTF-8 file, one message per line.
  prompt: str = ''  # sample (textgen): the text to continue.
  length: int = 200  # sample (textgen): characters to generate at most.
  temperature: float = 1.0  # sample (textgen): 0 = greedy.
  stop_at_end: bool = True  # sample (textgen): stop at the end-of-message character.
  seed: int = 0  # sample: the sampling seed.
  labels: tuple[int, ...] = ()  # sample (cgan): classes to draw; () = all ten.
  num_per_class: int = 10  # sample (cgan): images per class.
  out: str = ''  # sample (cgan): output PNG path ('' = <workdir>/samples/sample.png).


def run(config: ml_collections.ConfigDict, mode: str, workdir: Path, options: ModeOptions) -> None:
  """Checks the config, then runs `mode` of the config's experiment."""
  if config.experiment not in EXPERIMENTS:
    raise UserError(f'config.experiment={config.experiment!r} is unknown; '
                    f'use one of {", ".join(sorted(EXPERIMENTS))}.')
  module = importlib.import_module(EXPERIMENTS[config.experiment])
  if mode not in module.MODES:
    raise UserError(f'--mode={mode} is not a mode of the {config.experiment} experiment; '
                    f'use one of {", ".join(module.MODES)}.')
  module.check_config(config)
  module.MODES[mode](config, workdir, options)
