"""Experiment: a small CNN Fashion-MNIST classifier, the judge of the cGAN's images.

`configs/fmnist_classifier.py` trains it on the real training set. The cGAN's evaluation restores
it (training it first if its workdir has no checkpoint) and, for the train-on-generated score,
trains the same architecture on generated images with `train_classifier`.
"""

import functools
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax import config_base, fmnist_data, param_summary, train_loop
from aml2_jax.checkpointing import restore_latest_state
from aml2_jax.cnn_classifier import FashionCNN
from aml2_jax.evaluation import map_in_batches
from aml2_jax.metrics_logging import write_json
from aml2_jax.train_state import TrainState, apply_gradients, create_train_state, step_key
from aml2_jax.workdir import WorkdirLock, write_config


def check_config(config: ml_collections.ConfigDict) -> None:
  config_base.check_base(config)
  config_base.check_positive(config, 'optim.learning_rate', 'model.feature_dim')
  config_base.check_fraction(config, 'model.dropout')


def build_model(config: ml_collections.ConfigDict) -> FashionCNN:
  return FashionCNN(channels=tuple(config.model.channels), feature_dim=config.model.feature_dim,
                    dropout=config.model.dropout)


def make_tx(config: ml_collections.ConfigDict, num_examples: int) -> optax.GradientTransformation:
  """Adam with the learning rate decayed to 0 by a cosine over the whole run."""
  total_steps = config.num_epochs * (num_examples // config.batch_size)
  return optax.adam(optax.cosine_decay_schedule(config.optim.learning_rate, max(total_steps, 1)))


def create_state(config: ml_collections.ConfigDict, num_examples: int) -> TrainState:
  key = jax.random.key(config.seed)
  init_key, run_key = jax.random.split(key)
  params = build_model(config).init(init_key, jnp.zeros((1, 28, 28)))['params']
  return create_train_state(params, make_tx(config, num_examples), run_key)


def to_unit_range(images_uint8: jax.Array) -> jax.Array:
  """uint8 pixels [..., 28, 28] -> float32 in [-1, 1], the range the cGAN generates."""
  return images_uint8.astype(jnp.float32) / 127.5 - 1.0


def train_step(state: TrainState, data: dict, batch_idx: jax.Array, *, model, tx):
  """One Adam step on softmax cross-entropy; `data` holds uint8 'images' and int 'labels'."""
  images, labels = to_unit_range(data['images'][batch_idx]), data['labels'][batch_idx]

  def loss_fn(params):
    logits, _ = model.apply({'params': params}, images, train=True,
                            rngs={'dropout': step_key(state)})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return apply_gradients(state, grads, tx), {'loss': loss, 'accuracy': accuracy}


def make_predict(model: FashionCNN, params) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """uint8 images [num, 28, 28] -> (logits [num, 10], features [num, feature_dim]), batched."""
  apply = jax.jit(lambda images: model.apply({'params': params}, to_unit_range(images)))
  return lambda images: tuple(map_in_batches(apply, images, batch_size=1000))


def train_classifier(config, workdir: Path, train_images, train_labels, test_images, test_labels,
                     meta: dict) -> TrainState:
  """Trains (or resumes) the CNN on the given arrays, checkpointing in `workdir`."""
  model, tx = build_model(config), make_tx(config, len(train_labels))
  test_accuracy = lambda state: {'test_accuracy': float(np.mean(
      make_predict(model, state.params)(test_images)[0].argmax(-1) == test_labels))}
  task = train_loop.TrainTask(
      state=create_state(config, len(train_labels)),
      train_step=functools.partial(train_step, model=model, tx=tx),
      data={'images': train_images, 'labels': train_labels.astype(np.int32)},
      num_examples=len(train_labels), evaluate=test_accuracy, meta=meta)
  # The last epoch is the model: picking the best epoch by test accuracy would tune on the test set.
  return train_loop.train_in_workdir(task, config, workdir)


def _meta(config) -> dict:
  return {'experiment': 'fmnist_classifier', 'model': config.model.to_dict()}


def load_data(config) -> fmnist_data.FashionMnist:
  data = fmnist_data.load_fashion_mnist(config.data.dir)
  if config.data.limit:  # Smoke runs train on a prefix.
    return fmnist_data.FashionMnist(data.train_images[:config.data.limit],
                                    data.train_labels[:config.data.limit],
                                    data.test_images[:config.data.limit],
                                    data.test_labels[:config.data.limit])
  return data


def train(config, workdir: Path, options=None) -> dict:
  """Trains on real Fashion-MNIST and writes `results.json` (test accuracy, params)."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    data = load_data(config)
    state = train_classifier(config, workdir, data.train_images, data.train_labels,
                             data.test_images, data.test_labels, _meta(config))
    return _write_results(config, workdir, state.params, data)


def restore_params(config, workdir: Path):
  """The latest checkpoint's params of a trained classifier in `workdir`."""
  state = restore_latest_state(workdir, _meta(config), lambda: create_state(config, num_examples=1),
                               'python launch.py --config=configs/fmnist_classifier.py')
  return state.params


def evaluate(config, workdir: Path, options=None) -> dict:
  return _write_results(config, workdir, restore_params(config, workdir), load_data(config))


def _write_results(config, workdir: Path, params, data) -> dict:
  logits, _ = make_predict(build_model(config), params)(data.test_images)
  results = {'test_accuracy': float(np.mean(logits.argmax(-1) == data.test_labels)),
             'num_params': param_summary.count_params(params)}
  write_json(workdir / 'results.json', results)
  print(f'fmnist classifier: test accuracy {results["test_accuracy"]:.4f}')
  return results


def summary(config, workdir: Path, options=None) -> None:
  params = jax.eval_shape(lambda: create_state(config, num_examples=1)).params
  print(param_summary.param_table(params, 'FashionCNN'))


MODES = {'train': train, 'eval': evaluate, 'summary': summary}
