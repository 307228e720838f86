"""The experiment interface, the registry of experiments, and the command-line modes they run.

Every experiment is a subpackage of `aml2_jax` whose `__init__` provides what `Experiment` lists;
`tests/test_experiment.py` checks each one against it. The launcher (`launch.py`) and the
benchmark (`aml2_jax.bench`) use experiments only through this interface.
"""

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import ml_collections

from aml2_jax import console
from aml2_jax.errors import UserError

# config.experiment -> the subpackage that runs it.
EXPERIMENTS = ('cgan', 'fmnist_classifier', 'spam', 'textgen')


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


Mode = Callable[[ml_collections.ConfigDict, Path, ModeOptions], Any]


@runtime_checkable
class Experiment(Protocol):
  """What an experiment subpackage provides.

  Attributes:
    CONFIGS: the config files of `configs/` that run it (names without `.py`).
    MODES: its command-line modes besides `summary` (which every experiment has): at least
      'train' and 'eval'; a mode is `fn(config, workdir, options)`.
  """
  CONFIGS: tuple[str, ...]
  MODES: Mapping[str, Mode]

  def check_config(self, config: ml_collections.ConfigDict) -> None:
    """Raises `UserError` naming the field and the fix for a value it cannot run."""

  def load_data(self, config: ml_collections.ConfigDict) -> Any:
    """The training data of a run (what `build_task` takes)."""

  def build_task(self, config: ml_collections.ConfigDict, data: Any) -> Any:
    """The `aml2_jax.training.loop.TrainTask` that trains on `data` (the benchmark times it)."""

  def param_trees(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """{title: abstract params} of each network, for `--mode=summary` (no memory allocated)."""


def get(name: str) -> Experiment:
  """The experiment subpackage named `name` (a `config.experiment` value)."""
  if name not in EXPERIMENTS:
    raise UserError(f'config.experiment={name!r} is unknown; use one of {", ".join(EXPERIMENTS)}.')
  return importlib.import_module(f'aml2_jax.{name}')


def modes(experiment: Experiment) -> dict[str, Mode]:
  """Every mode of `experiment`: its own and `summary`."""
  return {**experiment.MODES, 'summary': lambda config, workdir, options: summary(experiment,
                                                                                   config)}


def summary(experiment: Experiment, config: ml_collections.ConfigDict) -> None:
  """Prints a Keras-style parameter table of each of the experiment's networks."""
  from aml2_jax.training.param_summary import param_table  # pylint: disable=g-import-not-at-top
  tables = [param_table(params, title) for title, params in experiment.param_trees(config).items()]
  console.say('\n\n'.join(tables))


def run(config: ml_collections.ConfigDict, mode: str, workdir: Path, options: ModeOptions) -> None:
  """Checks the config, then runs `mode` of the config's experiment."""
  experiment = get(config.experiment)
  available = modes(experiment)
  if mode not in available:
    raise UserError(f'--mode={mode} is not a mode of the {config.experiment} experiment; '
                    f'use one of {", ".join(available)}.')
  experiment.check_config(config)
  available[mode](config, workdir, options)
