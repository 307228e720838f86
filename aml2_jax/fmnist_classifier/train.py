"""Training and restoring the Fashion-MNIST CNN: on real images (the judge) or generated ones (CAS).

Adam with the learning rate decayed to 0 by a cosine over the run. The decay is applied in the
step from the step number and the run's length, so the train state does not depend on the data
size and restores without it. The last epoch is the model: picking the best epoch by test accuracy
would tune on the test set.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aml2_jax.fmnist_classifier.models import FashionCNN, make_model
from aml2_jax.training import inference, loop, restore
from aml2_jax.training.train_state import TrainState, apply_gradients, step_key

TRAIN_COMMAND = 'python launch.py --config=configs/fmnist_classifier.py'
PREDICT_BATCH = 1000  # Images per jitted inference call.


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam's direction only; the step scales it by the cosine-decayed rate (see `train_step`)."""
  del config
  return optax.scale_by_adam()


def create_train_state(config: ml_collections.ConfigDict) -> TrainState:
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  params = make_model(config).init(init_key, jnp.zeros((1, 28, 28)))['params']
  return TrainState.create(params, make_optimizer(config), run_key)


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 pixels [..., 28, 28] -> float32 in [-1, 1], the range the cGAN generates."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def train_step(state: TrainState, data: dict, batch_idx: jax.Array, *, model: FashionCNN,
               tx: optax.GradientTransformation, learning_rate: optax.Schedule):
  """One Adam step on softmax cross-entropy at the rate `learning_rate(step)`.

  Args:
    state: the train state.
    data: uint8 'images' [num, 28, 28] and int32 'labels' [num], gathered with `batch_idx`.
    batch_idx: int32 [batch].
    model, tx, learning_rate: bound with functools.partial.
  """
  images, labels = to_unit_range(data['images'][batch_idx]), data['labels'][batch_idx]

  def loss_fn(params):
    logits, _ = model.apply({'params': params}, images, train=True,
                            rngs={'dropout': step_key(state)})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = apply_gradients(state, grads, tx, scale=-learning_rate(state.step))
  return state, {'loss': loss, 'accuracy': accuracy}


@functools.cache
def predict_fn(model: FashionCNN):
  """`(params, uint8 images [num, 28, 28]) -> [logits [num, 10], features [num, feature_dim]]`.

  Compiled once per model and process; params are an argument.
  """
  return inference.batched(lambda params, images: model.apply({'params': params},
                                                              to_unit_range(images)),
                           PREDICT_BATCH)


def accuracy(model: FashionCNN, params, images: np.ndarray, labels: np.ndarray) -> float:
  """Share of `images` the model classifies as `labels`."""
  logits, _ = predict_fn(model)(params, images)
  return float(np.mean(logits.argmax(-1) == labels))


def build_task(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
               meta: dict) -> loop.TrainTask:
  """The training task on uint8 `images` [num, 28, 28] and int `labels` [num]."""
  model = make_model(config)
  total_steps = config.num_epochs * (len(labels) // config.batch_size)
  schedule = optax.cosine_decay_schedule(config.optim.learning_rate, max(total_steps, 1))
  step = functools.partial(train_step, model=model, tx=make_optimizer(config),
                           learning_rate=schedule)
  return loop.TrainTask(state=create_train_state(config), train_step=step,
                        data={'images': images, 'labels': labels.astype(np.int32)},
                        num_examples=len(labels), meta=meta)


def train_classifier(config, workdir: Path, images, labels, meta: dict,
                     val: tuple[np.ndarray, np.ndarray] | None = None) -> TrainState:
  """Trains (or resumes) the CNN on the given arrays, checkpointing in `workdir`.

  `val` (images, labels), when given, is scored after every epoch as `val_accuracy`. The test
  set never is: the caller scores it once, on the final model.
  """
  model = make_model(config)
  evaluate = (lambda state: {}) if val is None else (
      lambda state: {'val_accuracy': accuracy(model, state.params, *val)})
  return loop.train_in_workdir(build_task(config, images, labels, meta), config, workdir,
                               loop.EpochHooks(evaluate=evaluate))


def model_meta(config: ml_collections.ConfigDict, experiment: str = 'fmnist_classifier') -> dict:
  """What a checkpoint must match: the experiment and the model (not its speed options)."""
  model = {k: v for k, v in config.model.to_dict().items() if k != 'ops'}
  return {'experiment': experiment, 'model': model}


def restore_params(config: ml_collections.ConfigDict, workdir: Path):
  """The latest checkpoint's params of a trained classifier in `workdir`."""
  return restore.restore_trained(workdir, lambda: create_train_state(config),
                                       model_meta(config), train_command=TRAIN_COMMAND).state.params
