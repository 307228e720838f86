"""Training and restoring the Fashion-MNIST CNN: on real images (the judge) or generated ones (CAS).

Adam inside one optax chain whose rate follows `learning_rate_schedule`: a linear warm-up to the
peak, then a cosine to 0 at the run's last step. The schedule reads Adam's own step count, so the
train state does not depend on the data size and restores without it. The last epoch is the
model: picking the best epoch by test accuracy would tune on the test set.
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
from aml2_jax.training.train_state import TrainState, step_key

TRAIN_COMMAND = 'python launch.py --config=configs/fmnist_classifier.py'
PREDICT_BATCH = 1000  # Images per jitted inference call.


def learning_rate_schedule(config: ml_collections.ConfigDict, num_examples: int) -> optax.Schedule:
  """Step -> rate: 0 rising linearly to `optim.learning_rate` over the first
  `optim.warmup_fraction` of the run's steps, then a cosine to 0 at its last step."""
  total = max(config.num_epochs * (num_examples // config.batch_size), 1)
  warmup = int(round(config.optim.warmup_fraction * total))
  if not 0 < warmup < total:
    return optax.cosine_decay_schedule(config.optim.learning_rate, total)
  return optax.warmup_cosine_decay_schedule(0.0, config.optim.learning_rate, warmup, total)


def create_train_state(config: ml_collections.ConfigDict, num_examples: int = 0) -> TrainState:
  """A fresh state; `num_examples` sizes the schedule (its state does not depend on it)."""
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  model = make_model(config)
  return TrainState.create(apply_fn=model.apply,
                           params=model.init(init_key, jnp.zeros((1, 28, 28)))['params'],
                           tx=optax.adam(learning_rate_schedule(config, num_examples)), key=run_key)


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 pixels [..., 28, 28] -> float32 in [-1, 1], the range the cGAN generates."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def train_step(state: TrainState, data: dict, batch_idx: jax.Array):
  """One optimizer step on softmax cross-entropy; `data` holds uint8 'images' [num, 28, 28] and
  int32 'labels' [num], gathered with `batch_idx` int32 [batch]."""
  images, labels = to_unit_range(data['images'][batch_idx]), data['labels'][batch_idx]

  def loss_fn(params):
    logits, _ = state.apply_fn({'params': params}, images, train=True,
                               rngs={'dropout': step_key(state)})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits.argmax(-1) == labels).mean()

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  return state, {'loss': loss, 'accuracy': accuracy}


@functools.cache
def predict_fn(model: FashionCNN):
  """`(params, uint8 images [num, 28, 28]) -> [logits [num, 10], features [num, feature_dim]]`.

  Compiled once per model and process; params are an argument. Always the plain path: the fast
  paths serve train steps fused in a loop, while a forward pass alone runs faster with XLA:CPU's
  own convolution than with im2col (docs/performance.md).
  """
  plain = model.clone(fast=False)
  return inference.batched(lambda params, images: plain.apply({'params': params},
                                                              to_unit_range(images)),
                           PREDICT_BATCH)


def accuracy(model: FashionCNN, params, images: np.ndarray, labels: np.ndarray) -> float:
  """Share of `images` the model classifies as `labels`."""
  logits, _ = predict_fn(model)(params, images)
  return float(np.mean(logits.argmax(-1) == labels))


def build_task(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
               meta: dict) -> loop.TrainTask:
  """The training task on uint8 `images` [num, 28, 28] and int `labels` [num]."""
  return loop.TrainTask(state=create_train_state(config, len(labels)), train_step=train_step,
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
  """What a checkpoint must match (see `restore.checkpoint_meta`): a cosine spans the run."""
  return restore.checkpoint_meta(config, experiment, schedule_spans_run=True)


def restore_params(config: ml_collections.ConfigDict, workdir: Path):
  """The latest checkpoint's params of a trained classifier in `workdir`."""
  return restore.restore_trained(workdir, lambda: create_train_state(config),
                                       model_meta(config), train_command=TRAIN_COMMAND).state.params
