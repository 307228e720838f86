"""Keras 3 peers of the five models on the JAX backend, trained by jitted stateless steps.

Used by `python -m benchmarks.peers.run_peer --framework=keras_jax --model=NAME`.
`build(name)` returns a `Peer`: `peer.step(*peer.batch)` runs one train step and returns its loss
(a jax array, not yet waited for). The models are plain Keras layers (SimpleRNN, LSTM, Dense,
Embedding, Dropout); the step is Keras' documented JAX loop, `model.stateless_call` plus
`optimizer.stateless_apply` under one `jax.jit` with the state donated, so no step waits for the
host (`model.train_on_batch` returns numpy, a sync every step).
"""

import functools
import os
from dataclasses import dataclass
from typing import Callable

os.environ['KERAS_BACKEND'] = 'jax'  # Read once, at keras' import.

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from benchmarks.peers import specs  # noqa: E402


@dataclass
class Peer:
  step: Callable  # step(*batch) -> loss (jax array) of the last update.
  batch: tuple
  num_params: int
  batch_size: int
  note: str = ''


def spam(cell: str) -> keras.Model:
  ids = keras.Input((specs.SPAM_LEN,), dtype='int32')
  x = layers.Embedding(specs.SPAM_VOCAB, specs.SPAM_EMBED)(ids)
  if cell == 'rnn':
    x = layers.SimpleRNN(32)(x)
    x = layers.Dropout(0.25)(layers.Dense(256, activation='relu')(x))
  else:
    x = layers.LSTM(32)(x)
  return keras.Model(ids, layers.Dense(1)(x))


def textgen(cell: str) -> keras.Model:
  ids = keras.Input((specs.WINDOW,), dtype='int32')
  x = ops.one_hot(ids, specs.CHARS)  # The study's one-hot input, built in the model.
  if cell == 'rnn':
    x = layers.Dropout(0.2)(layers.SimpleRNN(278)(x))
  else:
    x = layers.LSTM(128)(x)
  return keras.Model(ids, layers.Dense(specs.CHARS)(x))  # Logits; softmax is in the loss.


def leaky_stack(x, widths: tuple, dropout: float = 0.0):
  for width in widths:
    x = layers.LeakyReLU(0.2)(layers.Dense(width)(x))
    x = layers.Dropout(dropout)(x) if dropout else x
  return x


def conditioned(n_in: int):
  """Inputs (vector, int label) and their concatenation with the label's embedding."""
  vec, label = keras.Input((n_in,)), keras.Input((), dtype='int32')
  embedded = layers.Embedding(specs.CLASSES, specs.LABEL_EMBED)(label)
  return [vec, label], layers.Concatenate()([vec, embedded])


def generator() -> keras.Model:
  inputs, x = conditioned(specs.NOISE)
  x = leaky_stack(x, specs.G_HIDDEN)
  return keras.Model(inputs, layers.Dense(specs.IMAGE, activation='tanh')(x))


def discriminator() -> keras.Model:
  inputs, x = conditioned(specs.IMAGE)
  x = leaky_stack(x, specs.D_HIDDEN, 0.3)
  return keras.Model(inputs, layers.Dense(1)(x))


def initial_state(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> tuple:
  optimizer.build(model.trainable_variables)
  return ([v.value for v in model.trainable_variables],
          [v.value for v in model.non_trainable_variables],  # Dropout's seed state lives here.
          [v.value for v in optimizer.variables])


def stateful(jitted: Callable, state) -> Callable:
  """Wraps a pure step(state, *batch) -> (state, loss) into step(*batch) -> loss."""
  def step(*batch):
    nonlocal state
    state, loss = jitted(state, *batch)
    return loss
  return step


def classifier(name: str) -> Peer:
  if name.startswith('spam'):
    model = spam(name.split('_')[1])
    optimizer = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
  else:
    model = textgen(name.split('_')[1])
    optimizer = keras.optimizers.RMSprop(learning_rate=0.01, rho=0.9, epsilon=1e-7)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def loss_of(trainable, non_trainable, ids, targets):
    logits, non_trainable = model.stateless_call(trainable, non_trainable, ids, training=True)
    return loss_fn(targets, logits), non_trainable

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, ids, targets):
    trainable, non_trainable, opt_vars = state
    (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
        trainable, non_trainable, ids, targets)
    trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
    return (trainable, non_trainable, opt_vars), loss

  ids, targets = specs.make_batch(name)
  if name.startswith('spam'):
    targets = targets[:, None]  # The model's output is [batch, 1].
  return Peer(stateful(step, initial_state(model, optimizer)), (jnp.asarray(ids), jnp.asarray(targets)),
              model.count_params(), specs.BATCH_SIZES[name])


def cgan() -> Peer:
  """D on real ⊕ generated images in one batch of 128, then G (non-saturating) against the new D.

  G's forward pass is shared: its VJP is kept from the D update and pulled back through the
  gradient of G's loss with respect to the generated images.
  """
  b = specs.BATCH_SIZES['cgan']
  gen, disc = generator(), discriminator()
  g_opt = keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.5, beta_2=0.999)
  d_opt = keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.5, beta_2=0.999)
  bce = keras.losses.BinaryCrossentropy(from_logits=True)
  real_fake_targets = jnp.concatenate([jnp.ones((b, 1)), jnp.zeros((b, 1))])

  def d_loss(d_train, d_rest, images, labels, targets):
    logits, d_rest = disc.stateless_call(d_train, d_rest, [images, labels], training=True)
    return bce(targets, logits), d_rest

  @functools.partial(jax.jit, donate_argnums=0)
  def step(state, images, labels):
    (g_train, g_rest, g_vars), (d_train, d_rest, d_vars), key = state
    key, z_key, label_key = jax.random.split(key, 3)
    z = jax.random.normal(z_key, (b, specs.NOISE))
    fake_labels = jax.random.randint(label_key, (b,), 0, specs.CLASSES)
    fake, g_vjp, g_rest = jax.vjp(
        lambda t: gen.stateless_call(t, g_rest, [z, fake_labels], training=True), g_train, has_aux=True)
    (_, d_rest), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
        d_train, d_rest, jnp.concatenate([images, jax.lax.stop_gradient(fake)]),
        jnp.concatenate([labels, fake_labels]), real_fake_targets)
    d_train, d_vars = d_opt.stateless_apply(d_vars, d_grads, d_train)
    # Gradient with respect to the images only: jax computes no D weight gradients here.
    (g_loss, d_rest), fake_grad = jax.value_and_grad(
        lambda x, rest: d_loss(d_train, rest, x, fake_labels, real_fake_targets[:b]),
        has_aux=True)(fake, d_rest)
    (g_grads,) = g_vjp(fake_grad)
    g_train, g_vars = g_opt.stateless_apply(g_vars, g_grads, g_train)
    return ((g_train, g_rest, g_vars), (d_train, d_rest, d_vars), key), g_loss

  state = (initial_state(gen, g_opt), initial_state(disc, d_opt), jax.random.key(0))
  images, labels = specs.make_batch('cgan')
  return Peer(stateful(step, state), (jnp.asarray(images), jnp.asarray(labels)),
              gen.count_params() + disc.count_params(), b)


def build(name: str) -> Peer:
  keras.utils.set_random_seed(0)
  return cgan() if name == 'cgan' else classifier(name)


def version() -> str:
  return f'keras {keras.__version__} (jax {jax.__version__})'
