"""Experiment: a small CNN Fashion-MNIST classifier, the judge of the cGAN's images.

`configs/fmnist_classifier.py` trains it on the real training set. The cGAN's evaluation restores
it (training it first if its workdir has no checkpoint) and, for the train-on-generated score,
trains the same architecture on generated images (`train.train_classifier`).
"""

from pathlib import Path

import jax
import ml_collections

from aml2_jax import console
from aml2_jax.datasets import fashion_mnist
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
  config_lib.check_choice(config, 'model.ops', fast_ops.OPS)
  config_lib.check_non_negative(config, 'data.limit')


def load_data(config: ml_collections.ConfigDict) -> fashion_mnist.FashionMnist:
  """Fashion-MNIST; smoke runs use the first `config.data.limit` train and test images."""
  data = fashion_mnist.load_fashion_mnist(config.data.dir)
  return data.head(config.data.limit, config.data.limit)


def build_task(config: ml_collections.ConfigDict, data: fashion_mnist.FashionMnist):
  return train_lib.build_task(config, data.train_images, data.train_labels,
                              train_lib.model_meta(config))


def param_trees(config: ml_collections.ConfigDict) -> dict:
  return {'FashionCNN': jax.eval_shape(lambda: train_lib.create_train_state(config)).params}


def train_and_evaluate(config, workdir: Path, options=None) -> dict:
  """Trains on all real training images and writes `results.json` (test accuracy, params).

  The recipe is fixed (last epoch, no choice made on held-out data), so no validation part is
  carved out: the test set is scored once, at the end.
  """
  with WorkdirLock(workdir):
    write_config(workdir, config)
    data = load_data(config)
    state = train_lib.train_classifier(config, workdir, data.train_images, data.train_labels,
                                       train_lib.model_meta(config))
    return _write_results(config, workdir, state.params, data)


def evaluate(config, workdir: Path, options=None) -> dict:
  return _write_results(config, workdir, train_lib.restore_params(config, workdir),
                        load_data(config))


def _write_results(config, workdir: Path, params, data) -> dict:
  results = {'test_accuracy': train_lib.accuracy(train_lib.make_model(config), params,
                                                 data.test_images, data.test_labels),
             'num_params': count_params(params)}
  write_json(workdir / 'results.json', results)
  console.say(f'fmnist classifier: test accuracy {results["test_accuracy"]:.4f}')
  return results


MODES = {'train': train_and_evaluate, 'eval': evaluate}
