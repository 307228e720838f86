"""The CPU fast paths against the plain Flax code they replace (`aml2_jax.layers.fast_ops`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax.cgan.models import Discriminator, Generator
from aml2_jax.fmnist_classifier.models import FashionCNN
from aml2_jax.layers import fast_ops


def test_concat_dense_equals_dense_on_the_concatenation():
  a, b = jax.random.normal(jax.random.key(1), (5, 784)), jax.random.normal(jax.random.key(2), (5, 10))
  split = fast_ops.ConcatDense(64).init(jax.random.key(0), a, b)
  whole = nn.Dense(64).init(jax.random.key(0), jnp.concatenate([a, b], -1))
  assert jax.tree.map(np.shape, split) == jax.tree.map(np.shape, whole)
  np.testing.assert_array_equal(split['params']['kernel'], whole['params']['kernel'])
  np.testing.assert_allclose(fast_ops.ConcatDense(64).apply(split, a, b),
                             nn.Dense(64).apply(whole, jnp.concatenate([a, b], -1)), atol=1e-5)


@pytest.mark.parametrize('shape', [(400, 1024), (3, 7)])
def test_uniform16_draws_are_uniform_16_bit_and_uncorrelated(shape):
  draws = np.asarray(fast_ops.uniform16(jax.random.key(0), shape))
  assert draws.shape == shape and draws.dtype == np.uint32 and draws.max() < 65536
  if draws.size > 1000:
    assert abs(draws.mean() / 65535 - 0.5) < 0.01
    flat = draws.ravel().astype(np.float64)
    half = flat.size // 2  # Draws i and i + half share a 32-bit word; i and i + 1 a hash.
    for a, b in ((flat[:half], flat[half:]), (flat[:-1], flat[1:])):
      assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
  other = np.asarray(fast_ops.uniform16(jax.random.key(1), shape))
  assert (draws != other).mean() > 0.99


def test_uniform16_with_a_non_threefry_key():
  draws = np.asarray(fast_ops.uniform16(jax.random.key(0, impl='rbg'), (30, 7)))
  assert draws.shape == (30, 7) and draws.dtype == np.uint32 and draws.max() < 65536
  assert len(np.unique(draws)) > 150


def test_dropout16_rate_and_expectation():
  x = jnp.ones((400, 1024))
  out = np.asarray(fast_ops.dropout16(x, fast_ops.uniform16(jax.random.key(0), x.shape), 0.3))
  kept = out != 0
  assert abs(1 - kept.mean() - 0.3) < 4 * np.sqrt(0.21 / kept.size)  # Binomial, 4 sigma.
  np.testing.assert_allclose(out[kept], 65536 / (65536 - 19661))  # Exact keep probability.
  assert 0.99 < out.mean() < 1.01


def test_concat_dense_plain_path_equals_fast_path_and_its_gradients():
  a, b = jax.random.normal(jax.random.key(1), (5, 784)), jax.random.normal(jax.random.key(2), (5, 10))
  fast, plain = fast_ops.ConcatDense(64, fast=True), fast_ops.ConcatDense(64, fast=False)
  params = fast.init(jax.random.key(0), a, b)
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, plain.init(jax.random.key(0), a, b))
  np.testing.assert_allclose(fast.apply(params, a, b), plain.apply(params, a, b), atol=1e-5)
  grad = lambda m: jax.grad(lambda p: m.apply(p, a, b).sum())(params)
  for g_fast, g_plain in zip(jax.tree.leaves(grad(fast)), jax.tree.leaves(grad(plain))):
    np.testing.assert_allclose(g_fast, g_plain, rtol=1e-5, atol=1e-4)


def test_generator_and_discriminator_give_the_same_outputs_on_both_paths():
  noise, labels = jax.random.normal(jax.random.key(1), (8, 100)), jnp.arange(8) % 10
  g_fast, g_plain = Generator(fast=True), Generator(fast=False)
  g_params = g_fast.init(jax.random.key(0), noise, labels)
  images = g_fast.apply(g_params, noise, labels)
  np.testing.assert_allclose(images, g_plain.apply(g_params, noise, labels), atol=1e-5)
  d_fast, d_plain = Discriminator(fast=True), Discriminator(fast=False)
  d_params = d_fast.init(jax.random.key(0), images, labels, train=False)
  np.testing.assert_allclose(d_fast.apply(d_params, images, labels, train=False),
                             d_plain.apply(d_params, images, labels, train=False), atol=1e-5)


@pytest.mark.parametrize('fast', [True, False])
def test_layer_dropout_rate_and_scale_on_both_paths(fast):
  class Stack(nn.Module):
    @nn.compact
    def __call__(self, x):
      dropout = fast_ops.LayerDropout(self, (256, 128), len(x), 0.3, train=True, fast=fast)
      return dropout(x[:, :256], 0), dropout(x[:, 256:], 1)

  x = jnp.ones((500, 384))
  first, second = Stack().apply({}, x, rngs={'dropout': jax.random.key(0)})
  for out in (np.asarray(first), np.asarray(second)):
    kept = out != 0
    assert abs(1 - kept.mean() - 0.3) < 4 * np.sqrt(0.21 / kept.size)  # Binomial, 4 sigma.
    np.testing.assert_allclose(out[kept], out[kept][0], rtol=1e-6)  # One scale for kept units.
    assert abs(out[kept][0] - 1 / 0.7) < 1e-4
  assert not np.array_equal(first[:, :128] != 0, second != 0)  # Layers draw their own masks.


@pytest.mark.parametrize('in_channels, features, size', [(1, 32, 28), (32, 64, 14)])
def test_conv3x3_im2col_equals_nn_conv_and_its_gradients(in_channels, features, size):
  """The judge's two convolutions at their exact shapes: the same params as `nn.Conv`, and the
  same outputs and gradients up to float32 rounding.

  Both paths sum the same n = 9 * in + 1 products (bias included) in different orders. Each is
  within n * u * sum|x w| of the exact sum (u = 2^-24, recursive summation), so they differ by at
  most 2 n u sum|x w|, which the test computes per output from |x| and |kernel|.
  """
  x = jax.random.normal(jax.random.key(1), (3, size, size, in_channels))
  params = fast_ops.Conv3x3(features).init(jax.random.key(0), x)
  flax_params = nn.Conv(features, (3, 3)).init(jax.random.key(0), x)
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, flax_params)
  np.testing.assert_array_equal(params['params']['kernel'], flax_params['params']['kernel'])
  fast, plain = fast_ops.Conv3x3(features, fast=True), fast_ops.Conv3x3(features, fast=False)
  reference = nn.Conv(features, (3, 3)).apply(params, x)
  abs_params = jax.tree.map(jnp.abs, params)
  bound = 2 * (9 * in_channels + 1) * 2.0 ** -24 * nn.Conv(features, (3, 3)).apply(abs_params,
                                                                                  jnp.abs(x))
  for module in (fast, plain):
    assert np.all(np.abs(module.apply(params, x) - reference) <= bound)
  weights = jax.random.normal(jax.random.key(2), reference.shape)  # A loss using every output.
  loss = lambda apply, p, x, w: (apply(p, x) * w).sum()
  grad = lambda apply: jax.grad(loss, (1, 2))(apply, params, x, weights)
  # A gradient entry sums at most n = 3 * size^2 products (the kernel's, over batch and
  # positions): the same argument, with sum|.| the gradient of the same loss on absolute values.
  n = 3 * size * size
  bounds = jax.grad(loss, (1, 2))(plain.apply, abs_params, jnp.abs(x), jnp.abs(weights))
  for got, want, scale in zip(*(jax.tree.leaves(g) for g in (grad(fast.apply), grad(plain.apply),
                                                              bounds))):
    assert np.all(np.abs(got - want) <= 2 * n * 2.0 ** -24 * scale)


def test_max_pool_fast_path_equals_nn_max_pool_and_its_gradient():
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 3))
  np.testing.assert_array_equal(fast_ops.max_pool_2x2(x, fast=True),
                                fast_ops.max_pool_2x2(x, fast=False))
  grad = lambda fast: jax.grad(lambda x: (fast_ops.max_pool_2x2(x, fast) ** 2).sum())(x)
  np.testing.assert_allclose(grad(True), grad(False), rtol=1e-6)
  cnn_fast, cnn_plain = FashionCNN(fast=True), FashionCNN(fast=False)
  params = cnn_fast.init(jax.random.key(0), x[..., 0])
  for a, b in zip(cnn_fast.apply(params, x[..., 0]), cnn_plain.apply(params, x[..., 0])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_auto_picks_the_fast_path_on_cpu_only():
  on_cpu = jax.default_backend() == 'cpu'
  assert fast_ops.use_fast_ops('auto') == on_cpu
  assert fast_ops.use_fast_ops('fast') and not fast_ops.use_fast_ops('plain')
  assert bool(fast_ops.cpu_compiler_options('auto')) == on_cpu
  assert fast_ops.cpu_compiler_options('plain') == {}
