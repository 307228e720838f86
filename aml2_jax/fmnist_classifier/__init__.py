"""Experiment: a small CNN Fashion-MNIST classifier, the judge of the cGAN's images (trained by
`cgan.judge.ensure_judge`; its recipe also trains the CAS classifier on generated images)."""

from pathlib import Path

import jax
import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax.datasets import fashion_mnist
from aml2_jax.errors import UserError
from aml2_jax.fmnist_classifier import train as train_lib
from aml2_jax.layers import fast_ops
from aml2_jax.training import config as config_lib
from aml2_jax.runtime.metrics_logging import write_json
from aml2_jax.training.param_summary import count_params
from aml2_jax.runtime.workdir import WorkdirLock, write_config

CONFIGS = ('fmnist_classifier',)


def check_config(config: ml_collections.ConfigDict) -> None:
  config_lib.check_base(config)
  config_lib.check_positive(config, 'optim.learning_rate', 'model.feature_dim')
  config_lib.check_fraction(config, 'model.dropout')
  config_lib.check_fraction(config, 'optim.warmup_fraction')
  config_lib.check_choice(config, 'model.ops', fast_ops.OPS)
  config_lib.check_non_negative(config, 'data.limit', 'data.val_size')
  if config.data.limit and config.data.val_size >= config.data.limit:
    raise UserError(f'config.data.val_size={config.data.val_size} leaves no training images of '
                    f'config.data.limit={config.data.limit}; lower it (0 = train on all).')


def load_data(config: ml_collections.ConfigDict) -> fashion_mnist.FashionMnist:
  """Fashion-MNIST; smoke runs use the first `config.data.limit` train and test images."""
  data = fashion_mnist.load_fashion_mnist(config.data.dir)
  return data.head(config.data.limit, config.data.limit)


def split_validation(config, data: fashion_mnist.FashionMnist):
  """((train images, labels), (validation images, labels) or None): `config.data.val_size`
  training images held out (stratified, seeded by `data.split_seed`)."""
  if not config.data.val_size:
    return (data.train_images, data.train_labels), None
  val = fashion_mnist.validation_indices(data.train_labels, config.data.val_size,
                                         config.data.split_seed)
  train = np.setdiff1d(np.arange(len(data.train_labels)), val)
  return ((data.train_images[train], data.train_labels[train]),
          (data.train_images[val], data.train_labels[val]))


def build_task(config: ml_collections.ConfigDict, data: fashion_mnist.FashionMnist):
  """The task the train mode runs: the training images less the validation slice."""
  (images, labels), _ = split_validation(config, data)
  return train_lib.build_task(config, images, labels, train_lib.model_meta(config))


def param_trees(config: ml_collections.ConfigDict) -> dict:
  return {'FashionCNN': jax.eval_shape(lambda: train_lib.create_train_state(config)).params}


def train_and_evaluate(config, workdir: Path, options=None) -> dict:
  """Trains on the real training images (less `config.data.val_size` held out and scored after
  every epoch to choose the recipe) and writes `results.json`; the last epoch is the model."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    data = load_data(config)
    (images, labels), val = split_validation(config, data)
    state = train_lib.train_classifier(config, workdir, images, labels,
                                       train_lib.model_meta(config), val)
    return _write_results(config, workdir, state.params, data, val)


def evaluate(config, workdir: Path, options=None) -> dict:
  data = load_data(config)
  params = train_lib.restore_params(config, workdir)
  return _write_results(config, workdir, params, data, split_validation(config, data)[1])


def _write_results(config, workdir: Path, params, data, val) -> dict:
  model = train_lib.make_model(config)
  results = {} if val is None else {'val_accuracy': train_lib.accuracy(model, params, *val)}
  results['test_accuracy'] = train_lib.accuracy(model, params, data.test_images, data.test_labels)
  results['num_params'] = count_params(params)
  write_json(workdir / 'results.json', results)
  console.say(f'fmnist classifier: test accuracy {results["test_accuracy"]:.4f}')
  return results


MODES = {'train': train_and_evaluate, 'eval': evaluate}
