"""Every experiment provides the written interface (`aml2_jax.experiment.Experiment`)."""

import inspect

import jax
import pytest

from aml2_jax import experiment
from aml2_jax.errors import UserError
from aml2_jax.training.config import CONFIG_DIR, load_config

_FUNCTIONS = ('check_config', 'load_data', 'build_task', 'param_trees')


@pytest.mark.parametrize('name', experiment.EXPERIMENTS)
def test_each_experiment_provides_the_interface(name):
  module = experiment.get(name)
  assert isinstance(module, experiment.Experiment)
  for function in _FUNCTIONS:
    assert callable(getattr(module, function)), f'{name}.{function} is not a function'
    expected = len(inspect.signature(getattr(experiment.Experiment, function)).parameters) - 1
    assert len(inspect.signature(getattr(module, function)).parameters) == expected, function
  assert {'train', 'eval'} <= set(module.MODES)
  assert set(experiment.modes(module)) == set(module.MODES) | {'summary'}
  for config_name in module.CONFIGS:
    assert (CONFIG_DIR / f'{config_name}.py').is_file()
    assert load_config(config_name).experiment == name


def test_every_config_file_belongs_to_exactly_one_experiment():
  listed = [c for name in experiment.EXPERIMENTS for c in experiment.get(name).CONFIGS]
  on_disk = sorted(p.stem for p in CONFIG_DIR.glob('*.py') if not p.stem.startswith('_'))
  assert sorted(listed) == on_disk


def test_an_unknown_experiment_is_a_user_error():
  with pytest.raises(UserError, match="config.experiment='gan' is unknown"):
    experiment.get('gan')


@pytest.mark.parametrize('name', experiment.EXPERIMENTS)
def test_param_trees_are_abstract_and_every_smoke_config_checks(name):
  module = experiment.get(name)
  config = load_config(module.CONFIGS[0], 'smoke')
  module.check_config(config)
  if name == 'textgen':
    pytest.skip('its param tree needs the vocabulary of the data (covered in test_textgen)')
  trees = module.param_trees(config)
  leaves = jax.tree.leaves(list(trees.values()))
  assert leaves and all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
