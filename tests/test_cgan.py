"""The conditional GAN: sizes, one train step, conditioning, the quality metrics, sampling."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax import cgan, fmnist_classifier, gan_metrics, gan_models
from aml2_jax.config_files import load_config
from aml2_jax.param_summary import count_params
from conftest import launch


@pytest.fixture(scope='module')
def config():
  return load_config('cgan', 'smoke')


def _step_fn(config):
  g, d = cgan.build_models(config)
  return functools.partial(cgan.train_step, g=g, d=d, tx=cgan.make_tx(config),
                           latent_dim=config.model.latent_dim, real_label=config.optim.real_label,
                           ema_decay=config.optim.g_ema_decay)


def _random_data(num=128):
  rng = np.random.default_rng(0)
  return {'images': jnp.asarray(rng.integers(0, 256, (num, 784), dtype=np.uint8)),
          'labels': jnp.asarray(np.arange(num, dtype=np.int32) % 10)}


def test_exact_parameter_counts(config):
  state = jax.eval_shape(lambda: cgan.create_state(config))
  assert count_params(state.g_params) == 1_489_012
  assert count_params(state.d_params) == 1_470_565


def test_output_shapes_and_ranges(config):
  state = cgan.create_state(config)
  g, d = cgan.build_models(config)
  noise = jax.random.normal(jax.random.key(1), (6, 100)) * 10  # Large inputs saturate tanh.
  images = g.apply({'params': state.g_params}, noise, jnp.arange(6))
  assert images.shape == (6, 784)
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  logits = d.apply({'params': state.d_params}, images, jnp.arange(6), train=False)
  assert logits.shape == (6,)


def test_one_step_changes_every_parameter_of_both_nets(config):
  state = cgan.create_state(config)
  new_state, metrics = jax.jit(_step_fn(config))(state, _random_data(), jnp.arange(64))
  for name in ('g_params', 'g_ema', 'd_params'):
    before, after = getattr(state, name), getattr(new_state, name)
    unchanged = [jax.tree_util.keystr(path) for path, b, a in zip(
        jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(before), jax.tree.leaves(after))
        if np.array_equal(b, a)]
    # Only label-embedding rows of classes absent from the batch may stay; here all 10 appear.
    assert not unchanged, f'{name} left unchanged by a step: {unchanged}'
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert int(new_state.step) == 1


def test_label_changes_the_generated_image(config):
  state = cgan.create_state(config)
  generate = cgan.make_generate(config, state.g_params)
  # Same seed and batch position, so the same noise; only the label differs.
  shirt, boot = generate(np.array([0]), seed=3), generate(np.array([9]), seed=3)
  assert shirt.shape == (1, 28, 28) and shirt.dtype == np.uint8
  assert np.abs(shirt.astype(int) - boot.astype(int)).max() > 0
  assert np.array_equal(generate(np.array([0]), seed=3), shirt)  # Deterministic for a seed.


def test_concat_dense_equals_dense_on_the_concatenation():
  a, b = jax.random.normal(jax.random.key(1), (5, 784)), jax.random.normal(jax.random.key(2), (5, 10))
  split = gan_models.ConcatDense(64).init(jax.random.key(0), a, b)
  whole = nn.Dense(64).init(jax.random.key(0), jnp.concatenate([a, b], -1))
  assert jax.tree.map(np.shape, split) == jax.tree.map(np.shape, whole)
  np.testing.assert_array_equal(split['params']['kernel'], whole['params']['kernel'])
  np.testing.assert_allclose(gan_models.ConcatDense(64).apply(split, a, b),
                             nn.Dense(64).apply(whole, jnp.concatenate([a, b], -1)), atol=1e-5)


@pytest.mark.parametrize('shape', [(400, 1024), (3, 7)])
def test_uniform16_draws_are_uniform_16_bit_and_uncorrelated(shape):
  draws = np.asarray(gan_models.uniform16(jax.random.key(0), shape))
  assert draws.shape == shape and draws.dtype == np.uint32 and draws.max() < 65536
  if draws.size > 1000:
    assert abs(draws.mean() / 65535 - 0.5) < 0.01
    flat = draws.ravel().astype(np.float64)
    half = flat.size // 2  # Draws i and i + half share a 32-bit word; i and i + 1 a hash.
    for a, b in ((flat[:half], flat[half:]), (flat[:-1], flat[1:])):
      assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
  other = np.asarray(gan_models.uniform16(jax.random.key(1), shape))
  assert (draws != other).mean() > 0.99


def test_uniform16_with_a_non_threefry_key():
  draws = np.asarray(gan_models.uniform16(jax.random.key(0, impl='rbg'), (30, 7)))
  assert draws.shape == (30, 7) and draws.dtype == np.uint32 and draws.max() < 65536
  assert len(np.unique(draws)) > 150


def test_dropout16_rate_and_expectation():
  x = jnp.ones((400, 1024))
  out = np.asarray(gan_models.dropout16(x, gan_models.uniform16(jax.random.key(0), x.shape), 0.3))
  kept = out != 0
  assert abs(1 - kept.mean() - 0.3) < 4 * np.sqrt(0.21 / kept.size)  # Binomial, 4 sigma.
  np.testing.assert_allclose(out[kept], 65536 / (65536 - 19661))  # Exact keep probability.
  assert 0.99 < out.mean() < 1.01


def test_discriminator_dropout_only_in_training(config):
  _, d = cgan.build_models(config)
  images, labels = jnp.zeros((4, 784)), jnp.arange(4)
  params = d.init(jax.random.key(0), images, labels, train=False)
  run = lambda seed: d.apply(params, images, labels, train=True, rngs={'dropout': jax.random.key(seed)})
  assert not np.allclose(run(0), run(1))
  np.testing.assert_array_equal(run(0), run(0))
  no_dropout = d.clone(dropout=0.0)  # Evaluation needs no rng and drops nothing.
  np.testing.assert_array_equal(d.apply(params, images, labels, train=False),
                                no_dropout.apply(params, images, labels, train=True))


def test_frechet_distance_zero_for_identical_sets_and_grows_with_shift():
  features = np.random.default_rng(0).normal(size=(2000, 8))
  assert abs(gan_metrics.frechet_distance(features, features)) < 1e-6
  shifts = [gan_metrics.frechet_distance(features, features + s) for s in (0.5, 1.0, 2.0)]
  assert shifts == sorted(shifts) and shifts[0] > 0.2
  assert shifts[1] == pytest.approx(8 * 1.0, rel=1e-6)  # |mu shift|^2 = 8 dims x 1^2.


def test_class_entropy_and_per_class_accuracy():
  assert gan_metrics.class_entropy(np.arange(1000) % 10) == pytest.approx(np.log(10))
  assert gan_metrics.class_entropy(np.zeros(50, int)) == 0.0
  per_class = gan_metrics.per_class_accuracy(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
  np.testing.assert_allclose(per_class, [1.0, 0.5, 1.0])


def test_conditional_accuracy_on_real_images_equals_classifier_accuracy(tiny_fmnist_root, tmp_path):
  clf_config = load_config('fmnist_classifier', 'smoke')
  clf_config.data.dir = str(tiny_fmnist_root)
  results = fmnist_classifier.train(clf_config, tmp_path)
  params = fmnist_classifier.restore_params(clf_config, tmp_path)
  predict = fmnist_classifier.make_predict(fmnist_classifier.build_model(clf_config), params)
  data = fmnist_classifier.load_data(clf_config)
  metrics = cgan.quality_metrics(predict, data.test_images, data.test_labels, data, seed=0)
  assert metrics['conditional_accuracy'] == pytest.approx(results['test_accuracy'])
  assert metrics['conditional_accuracy'] == metrics['classifier_test_accuracy']
  assert metrics['fid'] == pytest.approx(0.0, abs=1e-3)
  assert metrics['fid_train_vs_test'] > 0


def test_train_then_sample_in_a_fresh_process(config, tiny_fmnist_root, tmp_path):
  workdir = tmp_path / 'cgan'
  common = [f'--config.data.dir={tiny_fmnist_root}', f'--workdir={workdir}']
  trained = launch('--config=configs/cgan.py:smoke', '--noconfig.eval.after_training', *common)
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert (workdir / 'samples' / 'epoch_001.png').is_file()
  out = tmp_path / 'grid.png'
  sampled = launch('--config=configs/cgan.py:smoke', '--mode=sample', '--labels=0,3,9',
                   '--num_per_class=4', f'--out={out}', *common)
  assert sampled.returncode == 0, sampled.stderr[-2000:]
  assert out.is_file() and out.read_bytes()[:4] == b'\x89PNG'
  with np.load(out.with_suffix('.npz')) as npz:
    assert npz['images'].shape == (12, 28, 28) and npz['images'].dtype == np.uint8
    np.testing.assert_array_equal(npz['labels'], [0] * 4 + [3] * 4 + [9] * 4)
  bad = launch('--config=configs/cgan.py:smoke', '--mode=sample', '--labels=12', *common)
  assert bad.returncode == 2 and 'unknown classes [12]' in bad.stderr


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
  result = launch('--config=configs/cgan.py:smoke', '--mode=sample', f'--workdir={tmp_path}')
  assert result.returncode == 2
  assert result.stderr.startswith('error: no checkpoint in') and 'Traceback' not in result.stderr
