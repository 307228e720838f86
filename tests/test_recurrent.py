"""Tests for aml2_jax.recurrent: Keras parameter layout, and the scan against a plain loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax.layers import recurrent
from aml2_jax.layers.recurrent import Recurrent

CELLS = ['simple', 'lstm']


class _EmbedClassifier(nn.Module):
  """Embedding(5000, 50) -> RNN -> Dense... as in the Keras spam models."""
  cell: str
  units: int
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, ids):
    x = nn.Embed(5000, 50)(ids)
    carry, _ = Recurrent(self.units, cell=self.cell)(x)
    x = recurrent.last_output(carry)
    for width in self.hidden:
      x = nn.Dense(width)(x)
    return nn.Dense(1)(x)


class _OneHotCharModel(nn.Module):
  """One-hot chars (as a lookup) -> RNN -> Dense(vocab), as in the Keras text generator."""
  cell: str
  units: int
  vocab: int = 117

  @nn.compact
  def __call__(self, ids):
    _, outputs = Recurrent(self.units, cell=self.cell, vocab_size=self.vocab)(ids)
    return nn.Dense(self.vocab)(outputs)


def _count(model, inputs):
  shapes = jax.eval_shape(model.init, jax.random.key(0), inputs)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize('model, expected', [
    (_EmbedClassifier('simple', 32, (256,)), 261_361),
    (_EmbedClassifier('lstm', 32, ()), 260_657),
    (_OneHotCharModel('simple', 278), 142_731),
    (_OneHotCharModel('lstm', 128), 141_045),
])
def test_param_counts_match_keras(model, expected):
  assert _count(model, jnp.zeros((2, 10), jnp.int32)) == expected


@pytest.mark.parametrize('cell, gates', [('simple', 1), ('lstm', 4)])
def test_param_tree_and_output_shapes(cell, gates):
  layer = Recurrent(6, cell=cell)
  x = jnp.ones((2, 5, 3))
  params = layer.init(jax.random.key(0), x)['params']
  assert jax.tree.map(jnp.shape, params) == {
      'kernel': (3, gates * 6), 'bias': (gates * 6,), 'cell': {'recurrent_kernel': (6, gates * 6)}}
  carry, outputs = layer.apply({'params': params}, x)
  assert outputs.shape == (2, 5, 6)
  assert jax.tree.map(jnp.shape, carry) == (((2, 6), (2, 6)) if cell == 'lstm' else (2, 6))


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def _reference(cell, params, x):
  """Keras' cell maths as a plain numpy loop over time; returns outputs [batch, time, units]."""
  w, u, b = (np.asarray(params['kernel'], np.float64),
             np.asarray(params['cell']['recurrent_kernel'], np.float64),
             np.asarray(params['bias'], np.float64))
  units = u.shape[0]
  h = np.zeros((x.shape[0], units))
  c = np.zeros_like(h)
  outputs = []
  for t in range(x.shape[1]):
    z = x[:, t] @ w + h @ u + b
    if cell == 'simple':
      h = np.tanh(z)
    else:
      i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
    outputs.append(h)
  return np.stack(outputs, axis=1)


def _random_params(layer, inputs, seed=0):
  """Initialised params with every leaf perturbed, so zero biases don't hide a wrong slice."""
  params = layer.init(jax.random.key(seed), inputs)['params']
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(
      treedef, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize('cell', CELLS)
def test_scan_equals_python_loop(cell):
  x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype(np.float32)
  layer = Recurrent(5, cell=cell)
  params = _random_params(layer, x)
  carry, outputs = layer.apply({'params': params}, x)
  expected = _reference(cell, params, x.astype(np.float64))
  np.testing.assert_allclose(outputs, expected, atol=1e-5)
  np.testing.assert_allclose(recurrent.last_output(carry), expected[:, -1], atol=1e-5)


@pytest.mark.parametrize('cell', CELLS)
def test_lookup_equals_dense_one_hot(cell):
  vocab = 11
  ids = np.random.default_rng(1).integers(0, vocab, size=(3, 6))
  lookup = Recurrent(5, cell=cell, vocab_size=vocab)
  params = _random_params(lookup, ids)
  _, from_ids = lookup.apply({'params': params}, ids)
  _, from_one_hot = Recurrent(5, cell=cell).apply(
      {'params': params}, jax.nn.one_hot(ids, vocab))
  np.testing.assert_allclose(from_ids, from_one_hot, atol=1e-6)


def test_lookup_id_past_vocab_is_nan_not_clamped():
  layer = Recurrent(4, vocab_size=5)
  ids = jnp.array([[1, 5]])
  _, outputs = layer.apply(layer.init(jax.random.key(0), ids), ids)
  assert np.isfinite(outputs[0, 0]).all() and np.isnan(outputs[0, 1]).all()


def test_keras_initialisers():
  units = 3
  params = Recurrent(units, cell='lstm').init(jax.random.key(0), jnp.ones((1, 2, 5)))['params']
  np.testing.assert_array_equal(params['bias'], [0] * units + [1] * units + [0] * 2 * units)
  u = params['cell']['recurrent_kernel']  # [units, 4 * units], orthonormal rows.
  np.testing.assert_allclose(u @ u.T, np.eye(units), atol=1e-5)
  simple = Recurrent(units, cell='simple').init(jax.random.key(0), jnp.ones((1, 2, 5)))['params']
  np.testing.assert_array_equal(simple['bias'], np.zeros(units))


@pytest.mark.parametrize('cell', CELLS)
def test_unroll_and_jit_do_not_change_outputs(cell):
  x = np.random.default_rng(2).normal(size=(2, 7, 3)).astype(np.float32)
  params = _random_params(Recurrent(4, cell=cell), x)
  _, base = Recurrent(4, cell=cell).apply({'params': params}, x)
  for unroll in (3, 7):  # 3 leaves a remainder of the 7 steps.
    _, out = jax.jit(Recurrent(4, cell=cell, unroll=unroll).apply)({'params': params}, x)
    np.testing.assert_allclose(out, base, atol=1e-6)


@pytest.mark.parametrize('cell', CELLS)
def test_initial_carry_continues_the_sequence(cell):
  x = np.random.default_rng(3).normal(size=(2, 6, 3)).astype(np.float32)
  layer = Recurrent(4, cell=cell)
  params = {'params': _random_params(layer, x)}
  carry_all, whole = layer.apply(params, x)
  carry, first = layer.apply(params, x[:, :4])
  carry, rest = layer.apply(params, x[:, 4:], carry)
  np.testing.assert_allclose(np.concatenate([first, rest], axis=1), whole, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), carry, carry_all)


@pytest.mark.parametrize('cell', CELLS)
def test_every_parameter_gets_a_gradient(cell):
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 5, 3)).astype(np.float32)
  weights = rng.normal(size=(2, 5, 4)).astype(np.float32)
  layer = Recurrent(4, cell=cell)
  params = layer.init(jax.random.key(0), x)['params']

  def loss(p):
    return jnp.sum(layer.apply({'params': p}, x)[1] * weights)

  grads = jax.grad(loss)(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.asarray(g) != 0), f'zero gradient entries in {jax.tree_util.keystr(path)}'


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  x = np.random.default_rng(5).normal(size=(2, 6, 3)).astype(np.float32)
  params = _random_params(Recurrent(4), x)
  _, f32 = Recurrent(4).apply({'params': params}, x)
  _, bf16 = Recurrent(4, dtype=jnp.bfloat16).apply({'params': params}, x)
  assert bf16.dtype == jnp.float32
  assert jax.tree.leaves(Recurrent(4, dtype=jnp.bfloat16).init(
      jax.random.key(0), x))[0].dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, atol=3e-2)
  assert not np.allclose(bf16, f32, atol=1e-6)  # The dtype knob is really used.


def test_wrong_input_kind_is_a_clear_error():
  with pytest.raises(ValueError, match='int ids'):
    Recurrent(4, vocab_size=10).init(jax.random.key(0), jnp.ones((2, 3, 10)))
  with pytest.raises(ValueError, match='float'):
    Recurrent(4).init(jax.random.key(0), jnp.ones((2, 3), jnp.int32))
  with pytest.raises(ValueError, match='cell'):
    Recurrent(4, cell='gru').init(jax.random.key(0), jnp.ones((2, 3, 1)))
