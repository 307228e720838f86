"""The cGAN's maths pinned to independent computations: FID, the losses, the moving average, and
the recipe options (hinge, R1, two time scales, D steps per G step, the projection D).

Each test is written to fail under a specific wrong formula (listed in its docstring), which the
equal-covariance and "loss goes down" checks elsewhere let through.
"""

import functools
import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aml2_jax.cgan import losses, metrics as gan_metrics, train as cgan_train
from aml2_jax.cgan.models import IMAGE_PIXELS, make_model
from aml2_jax.training.config import load_config
from aml2_jax.training.param_summary import count_params
from aml2_jax.training.train_state import net_state


def _softplus(x: float) -> float:
  return math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
  return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- FID


def _features_with_moments(mean: np.ndarray, cov: np.ndarray, num: int, seed: int) -> np.ndarray:
  """[num, dim] features whose sample mean and sample covariance (ddof=1) are exactly given."""
  x = np.random.default_rng(seed).normal(size=(num, len(mean)))
  x -= x.mean(0)
  whiten = np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False)))
  return x @ whiten.T @ np.linalg.cholesky(cov).T + mean


def _fid_by_eigenvalues(mu_a, cov_a, mu_b, cov_b) -> float:
  """FID with Tr (S_a S_b)^1/2 as the sum of root eigenvalues of symmetric S_a^1/2 S_b S_a^1/2."""
  values, vectors = np.linalg.eigh(cov_a)
  root_a = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
  middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
               - 2 * np.sum(np.sqrt(np.clip(middle, 0, None))))


def test_frechet_distance_zero_for_identical_sets_and_grows_with_shift():
  features = np.random.default_rng(0).normal(size=(2000, 8))
  assert abs(gan_metrics.frechet_distance(features, features)) < 1e-6
  shifts = [gan_metrics.frechet_distance(features, features + s) for s in (0.5, 1.0, 2.0)]
  assert shifts == sorted(shifts) and shifts[0] > 0.2
  assert shifts[1] == pytest.approx(8 * 1.0, rel=1e-6)  # |mu shift|^2 = 8 dims x 1^2.


def test_fid_of_unequal_diagonal_covariances_has_the_closed_form():
  """Catches a FID without its trace / matrix-root term (equal covariances cannot)."""
  a, b = np.array([4.0, 1.0, 0.25, 9.0]), np.array([1.0, 4.0, 1.0, 1.0])
  mu_a, mu_b = np.array([0.0, 1.0, 0.0, -1.0]), np.array([1.0, 1.0, 2.0, 0.0])
  # |mu_a - mu_b|^2 = 1 + 0 + 4 + 1 = 6; sum (sqrt a - sqrt b)^2 = 1 + 1 + 0.25 + 4 = 6.25.
  expected = 12.25
  assert gan_metrics.frechet_distance_of_moments(mu_a, np.diag(a), mu_b, np.diag(b)) == (
      pytest.approx(expected, rel=1e-9))
  features_a = _features_with_moments(mu_a, np.diag(a), 500, seed=0)
  features_b = _features_with_moments(mu_b, np.diag(b), 700, seed=1)
  assert gan_metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)


def test_fid_of_rotated_covariances_matches_the_eigenvalue_form():
  """Catches a wrong matrix product under the root (e.g. S_a S_a) or a missing factor 2."""
  rng = np.random.default_rng(3)
  dim = 6
  mats = [rng.normal(size=(dim, dim)) for _ in range(2)]
  cov_a, cov_b = (m @ m.T / dim + 0.1 * np.eye(dim) for m in mats)
  mu_a, mu_b = rng.normal(size=dim), rng.normal(size=dim)
  expected = _fid_by_eigenvalues(mu_a, cov_a, mu_b, cov_b)
  assert expected > 1.0  # Not a degenerate case.
  assert gan_metrics.frechet_distance_of_moments(mu_a, cov_a, mu_b, cov_b) == pytest.approx(
      expected, rel=1e-8)
  features_a = _features_with_moments(mu_a, cov_a, 400, seed=4)
  features_b = _features_with_moments(mu_b, cov_b, 400, seed=5)
  assert gan_metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)


def test_fid_refuses_a_matrix_root_with_an_imaginary_part():
  """Catches a FID that silently keeps the real part of a complex root."""
  # diag(-1, 1) is no covariance: the root of the product is diag(i, 1).
  not_a_covariance = np.diag([-1.0, 1.0])
  with pytest.raises(ValueError, match='imaginary part of 1 on its diagonal'):
    gan_metrics.frechet_distance_of_moments(np.zeros(2), not_a_covariance, np.zeros(2), np.eye(2))


def test_fid_handles_a_singular_product_without_warnings():
  """Dead features (a constant column) make the product singular: finite, and no warning."""
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) * 2
  a[:, 2] = b[:, 2] = 0.0
  with np.errstate(all='raise'), warnings.catch_warnings():
    warnings.simplefilter('error')
    fid = gan_metrics.frechet_distance(a, b)
  expected = _fid_by_eigenvalues(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                 np.cov(b, rowvar=False))
  assert np.isfinite(fid) and fid == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- losses, by hand


def test_discriminator_loss_targets_real_as_one_and_generated_as_zero():
  """Catches swapped targets (real -> 0, generated -> 1)."""
  real, fake = jnp.array([2.0]), jnp.array([-1.0])
  # Real: -log sigmoid(2) = softplus(-2) = 0.126928; generated: -log(1 - sigmoid(-1)) =
  # softplus(-1) = 0.313262; the mean: 0.220095. Swapped targets give 1.720095.
  loss = float(losses.discriminator_loss(real, fake, 1.0))
  assert loss == pytest.approx((_softplus(-2) + _softplus(-1)) / 2, rel=1e-6)
  assert loss == pytest.approx(0.220095, abs=1e-6)
  # Smoothed real target 0.9: -(0.9 log sigmoid(2) + 0.1 log(1 - sigmoid(2))) for the real one.
  smoothed = float(losses.discriminator_loss(real, fake, 0.9))
  assert smoothed == pytest.approx((0.9 * _softplus(-2) + 0.1 * _softplus(2) + _softplus(-1)) / 2,
                                   rel=1e-6)


def test_generator_loss_is_non_saturating():
  """Catches the saturating log(1 - D(G(z))): other value, and a vanishing gradient."""
  fake = jnp.array([-3.0])  # D confidently rejects the sample: sigmoid(-3) = 0.047.
  # -log sigmoid(-3) = softplus(3) = 3.048587; the saturating loss is log(sigmoid(3)) = -0.048587.
  assert float(losses.generator_loss(fake)) == pytest.approx(_softplus(3), rel=1e-6)
  # d/dl -log sigmoid(l) = -(1 - sigmoid(l)) = -0.952574; the saturating one's is -0.047426.
  grad = float(jax.grad(lambda l: losses.generator_loss(l))(fake)[0])
  assert grad == pytest.approx(-(1 - _sigmoid(-3)), rel=1e-6)


def test_ema_update_weights_the_old_average_by_decay():
  """Catches decay on the wrong side: (1 - decay) * ema + decay * params."""
  ema = {'w': jnp.array([2.0, 0.0]), 'b': jnp.array(10.0)}
  params = {'w': jnp.array([4.0, 1.0]), 'b': jnp.array(0.0)}
  new = cgan_train.ema_update(ema, params, 0.75)
  np.testing.assert_allclose(new['w'], [0.75 * 2 + 0.25 * 4, 0.25 * 1])  # [2.5, 0.25]
  assert float(new['b']) == pytest.approx(7.5)


# ---------------------------------------------------------------- the step, on a tiny fixed network


class _ConstantG(nn.Module):
  """Every generated image is the parameter `image` [784], whatever the noise and label."""

  @nn.compact
  def __call__(self, noise, labels):
    image = self.param('image', nn.initializers.zeros, (IMAGE_PIXELS,))
    return jnp.broadcast_to(image, (noise.shape[0], IMAGE_PIXELS))


class _FirstPixelD(nn.Module):
  """D's logit is the first pixel times the parameter `w`; no dropout."""

  @nn.compact
  def __call__(self, images, labels, train=False):
    return images[:, 0] * self.param('w', nn.initializers.ones, ())


class _QuadraticD(nn.Module):
  """D's logit is w / 2 times the first pixel squared: dD/dx = w x_0 on the first pixel only."""

  @nn.compact
  def __call__(self, images, labels, train=False):
    return 0.5 * self.param('w', nn.initializers.ones, ()) * images[:, 0] ** 2


def _tiny_state(tx, d_tx=None, d=None):
  image = jnp.zeros(IMAGE_PIXELS).at[0].set(-0.5)
  return cgan_train.GanState(
      step=jnp.zeros((), jnp.int32), key=jax.random.key_data(jax.random.key(0)),
      g=net_state(_ConstantG().apply, {'image': image}, tx),
      g_ema={'image': jnp.zeros(IMAGE_PIXELS)},
      d=net_state((d or _FirstPixelD()).apply, {'w': jnp.array(1.0)}, d_tx or tx))


def _tiny_step(real_label: float, ema_decay: float = 0.9, lr: float = 1.0, d_lr=None,
               d=_FirstPixelD(), state=None, **options):
  """One real step with plain SGD on 4 real images (first pixel 1.0), G's first pixel -0.5.

  `d_lr` gives D its own SGD rate; `options` (loss, r1_weight, d_steps) go to the step."""
  tx = optax.sgd(lr)
  d_tx = None if d_lr is None else optax.sgd(d_lr)
  images = np.zeros((4, IMAGE_PIXELS), np.uint8)
  images[:, 0] = 255  # -> 255 / 127.5 - 1 = 1.0.
  data = {'images': jnp.asarray(images), 'labels': jnp.arange(4, dtype=jnp.int32)}
  step = functools.partial(cgan_train.train_step, latent_dim=3, real_label=real_label,
                           ema_decay=ema_decay, **options)
  return jax.jit(step)(_tiny_state(tx, d_tx, d) if state is None else state, data, jnp.arange(4))


def test_train_step_on_a_tiny_fixed_network_matches_the_hand_computation():
  """Catches swapped D targets, the saturating G loss, G scored against the old D, a wrong
  moving average (decay swapped, or averaging the pre-step weights)."""
  state, metrics = _tiny_step(real_label=1.0)
  r, f, w = 1.0, -0.5, 1.0  # Real first pixel, generated first pixel, D's weight.
  # D: loss 0.5 [softplus(-w r) + softplus(w f)] = 0.393669; SGD step on w with lr 1.
  assert float(metrics['d_loss']) == pytest.approx(0.5 * (_softplus(-w * r) + _softplus(w * f)),
                                                   rel=1e-6)
  dw = 0.5 * (-r * _sigmoid(-w * r) + f * _sigmoid(w * f))  # -0.228856
  w_new = w - dw  # 1.228856
  assert float(state.d.params['w']) == pytest.approx(w_new, rel=1e-6)
  # G against the updated D: loss softplus(-w' f) = 1.043...; gradient on the first pixel
  # -w' sigmoid(-w' f) (the 4 copies' 1/4 shares add up), so f' = f + w' sigmoid(-w' f).
  assert float(metrics['g_loss']) == pytest.approx(_softplus(-w_new * f), rel=1e-6)
  f_new = f + w_new * _sigmoid(-w_new * f)  # 0.297...
  assert float(state.g.params['image'][0]) == pytest.approx(f_new, rel=1e-6)
  assert not np.any(np.asarray(state.g.params['image'][1:]))  # D never looks at other pixels.
  # Moving average from zeros with decay 0.9: 0.1 * the new weights.
  np.testing.assert_allclose(state.g_ema['image'], 0.1 * np.asarray(state.g.params['image']),
                             rtol=1e-6)
  assert float(metrics['d_real']) == pytest.approx(_sigmoid(w * r), rel=1e-6)
  assert float(metrics['d_fake']) == pytest.approx(_sigmoid(w * f), rel=1e-6)


def test_train_step_smooths_only_the_real_target():
  """Catches label smoothing applied to the generated images' target or to G's target."""
  state, metrics = _tiny_step(real_label=0.9)
  r, f, w = 1.0, -0.5, 1.0
  real_term = 0.9 * _softplus(-w * r) + 0.1 * _softplus(w * r)
  assert float(metrics['d_loss']) == pytest.approx(0.5 * (real_term + _softplus(w * f)), rel=1e-6)
  # d/dw of the real term: -(0.9 - sigmoid(w r)) r.
  dw = 0.5 * (-(0.9 - _sigmoid(w * r)) * r + f * _sigmoid(w * f))
  w_new = w - dw
  assert float(state.d.params['w']) == pytest.approx(w_new, rel=1e-6)
  assert float(metrics['g_loss']) == pytest.approx(_softplus(-w_new * f), rel=1e-6)


# ---------------------------------------------------------------- recipe options


def test_hinge_losses_on_known_logits():
  """Catches hinge terms with the wrong sign or margin, or a mean over both sets together."""
  real, fake = jnp.array([2.0, 0.5]), jnp.array([-0.5, -3.0])
  # Real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5 -> mean 0.25; generated: relu(1 - 0.5) = 0.5,
  # relu(1 - 3) = 0 -> mean 0.25. The sum of the two means: 0.5.
  assert float(losses.discriminator_loss(real, fake, 1.0, 'hinge')) == pytest.approx(0.5)
  assert float(losses.discriminator_loss(jnp.array([3.0]), jnp.array([-2.0]), 1.0,
                                             'hinge')) == 0.0  # Both beyond the margin.
  assert float(losses.generator_loss(fake, 'hinge')) == pytest.approx(1.75)  # -mean.
  grad = jax.grad(lambda l: losses.generator_loss(l, 'hinge'))(fake)
  np.testing.assert_allclose(grad, [-0.5, -0.5])  # Never saturates.


def test_r1_penalty_on_a_quadratic_discriminator_matches_the_hand_computation():
  """Catches R1 on generated images, a missing 1/2, a sum over the batch instead of the mean,
  and a penalty that does not reach D's gradient."""
  gamma, r, f, w = 3.0, 1.0, -0.5, 1.0
  state, metrics = _tiny_step(real_label=1.0, d=_QuadraticD(), r1_weight=gamma)
  # dD/dx_0 = w r on each real image: penalty gamma / 2 * w^2 r^2 = 1.5 (4 images, mean).
  assert float(metrics['r1']) == pytest.approx(gamma / 2 * w ** 2 * r ** 2, rel=1e-6)
  bce = 0.5 * (_softplus(-w * r ** 2 / 2) + _softplus(w * f ** 2 / 2))
  assert float(metrics['d_loss']) == pytest.approx(bce + gamma / 2 * w ** 2, rel=1e-6)
  dw = 0.5 * (-r ** 2 / 2 * _sigmoid(-w * r ** 2 / 2) + f ** 2 / 2 * _sigmoid(w * f ** 2 / 2))
  dw += gamma * w * r ** 2  # d/dw of gamma / 2 * w^2 r^2.
  assert float(state.d.params['w']) == pytest.approx(w - dw, rel=1e-6)


def test_two_time_scales_give_each_net_its_rate():
  """Catches D updated with G's rate (or the reverse), in the step and in the config."""
  r, f, w = 1.0, -0.5, 1.0
  state, _ = _tiny_step(real_label=1.0, lr=1.0, d_lr=0.25)
  dw = 0.5 * (-r * _sigmoid(-w * r) + f * _sigmoid(w * f))
  w_new = w - 0.25 * dw
  assert float(state.d.params['w']) == pytest.approx(w_new, rel=1e-6)
  assert float(state.g.params['image'][0]) == pytest.approx(f + w_new * _sigmoid(-w_new * f),
                                                            rel=1e-6)  # G's rate: 1.
  config = load_config('cgan')
  config.optim.learning_rate, config.optim.d_learning_rate = 1e-4, 4e-4
  grads = {'x': jnp.array([1.0, -2.0])}
  for net, rate in (('g', 1e-4), ('d', 4e-4)):
    tx = cgan_train.make_optimizer(config, net)
    updates, _ = tx.update(grads, tx.init(grads))  # Adam's first step: -rate * sign(grad).
    np.testing.assert_allclose(updates['x'], [-rate, rate], rtol=1e-4)
  config.optim.d_learning_rate = 0.0  # Unset: D shares G's rate.
  updates, _ = cgan_train.make_optimizer(config, 'd').update(grads, optax.adam(1.0).init(grads))
  np.testing.assert_allclose(updates['x'], [-1e-4, 1e-4], rtol=1e-4)


def test_with_two_d_steps_a_d_step_leaves_g_untouched():
  """Catches G (or its average, or its optimizer) moving on a D-only step, or never moving."""
  state, metrics = _tiny_step(real_label=1.0, d_steps=2)
  start = _tiny_state(optax.sgd(1.0))
  assert float(state.d.params['w']) != 1.0
  for name in ('g', 'g_ema'):  # g: its params, optimizer state and step.
    for before, after in zip(jax.tree.leaves(getattr(start, name)),
                             jax.tree.leaves(getattr(state, name))):
      np.testing.assert_array_equal(before, after, err_msg=f'{name} moved on a D-only step')
  assert float(metrics['g_loss']) == 0.0
  state, metrics = _tiny_step(real_label=1.0, d_steps=2, state=state)  # Step 1: G moves too.
  assert float(state.g.params['image'][0]) != -0.5 and float(state.g_ema['image'][0]) != 0.0
  w = float(state.d.params['w'])
  assert float(metrics['g_loss']) == pytest.approx(2 * _softplus(0.5 * w), rel=1e-6)


def test_projection_discriminator_counts_and_uses_the_label_at_its_output():
  """Catches a projection that ignores the label, uses the wrong class row, or changes G."""
  config = load_config('cgan', 'projection')
  state = jax.eval_shape(lambda: cgan_train.create_train_state(config))
  assert count_params(state.g.params) == 1_489_012  # The generator is the study's.
  assert count_params(state.d.params) == 1_470_565 + 10 * 256  # + the 10 x 256 projection.
  _, d = make_model(config)
  params = d.init(jax.random.key(0), jnp.zeros((1, IMAGE_PIXELS)), jnp.zeros((1,), jnp.int32),
                  train=False)['params']
  images = jax.random.uniform(jax.random.key(1), (10, IMAGE_PIXELS), minval=-1, maxval=1)
  logits = lambda table: d.apply({'params': {**params, 'label_project': {'embedding': table}}},
                                 images, jnp.arange(10), train=False)
  zero = jnp.zeros((10, 256))
  one_row = zero.at[3].set(jax.random.normal(jax.random.key(2), (256,)))
  delta = logits(one_row) - logits(zero)
  assert np.count_nonzero(np.asarray(delta)) == 1 and float(delta[3]) != 0.0  # Only class 3.
  np.testing.assert_allclose(logits(2 * one_row) - logits(zero), 2 * delta, rtol=1e-5)


def test_classifier_discriminator_counts_and_trains_both_nets_on_the_class():
  """Catches a class head with the wrong size, a D that still sees the label (its head could read
  it back), a class loss left out of D's or G's loss, or one on the wrong labels."""
  config = load_config('cgan', 'classifier')
  state = jax.eval_shape(lambda: cgan_train.create_train_state(config))
  assert count_params(state.g.params) == 1_489_012
  # No label input (794 -> 784 inputs, no 10 x 10 table), plus the class head.
  assert count_params(state.d.params) == 1_470_565 - 10 * 1024 - 10 * 10 + 256 * 10 + 10
  logits = jnp.array([[0.5, 2.0, -1.0], [-0.5, 0.0, 3.0]])
  realness, classes = losses.split_logits(logits)
  np.testing.assert_array_equal(realness, [0.5, -0.5])
  expected = 0.5 * (np.log1p(np.exp(-3.0)) + np.log1p(np.exp(-3.0)))  # Both right by 3 nats.
  assert float(losses.class_loss(classes, jnp.array([0, 1]), 2.0)) == pytest.approx(2 * expected)
  assert losses.split_logits(realness)[1] is None
  _, d = make_model(config)
  d_params = jax.jit(d.init, static_argnames='train')(  # One compile, not one per operation.
      jax.random.key(0), jnp.zeros((1, IMAGE_PIXELS)), jnp.zeros((1,), jnp.int32), train=False)
  images = jnp.ones((2, IMAGE_PIXELS))
  score = jax.jit(lambda labels: d.apply(d_params, images, labels, train=False))
  # The label is not an input.
  np.testing.assert_array_equal(score(jnp.array([0, 1])), score(jnp.array([7, 9])))

  config.unlock()
  config.data.limit, config.batch_size = 64, 8
  # Narrow nets: what is checked here is where the class loss flows, not the study's sizes.
  config.model.g_hidden, config.model.d_hidden = (16, 16, 32), (32, 16, 16)
  data = {'images': np.random.default_rng(0).integers(0, 256, (64, IMAGE_PIXELS), np.uint8),
          'labels': np.arange(64, dtype=np.int32) % 10}
  batch = jnp.arange(8, dtype=jnp.int32)
  init = jax.jit(lambda: cgan_train.create_train_state(config))()

  @functools.partial(jax.jit, static_argnames='r1_weight')
  def step(class_weight, r1_weight=0.0):  # One program for both class weights.
    return cgan_train.train_step(init, data, batch, latent_dim=config.model.latent_dim,
                                 real_label=1.0, ema_decay=0.999, class_weight=class_weight,
                                 r1_weight=r1_weight)

  (with_class, metrics), (without, _) = step(1.0), step(0.0)
  assert float(metrics['d_class']) > 0
  head = lambda s: s.d.params['to_class']['kernel']
  assert not np.allclose(head(with_class), head(init))  # D's head learns from the class loss...
  np.testing.assert_array_equal(head(without), head(init))  # ...and only from it.
  g_kernel = lambda s: s.g.params['to_image']['kernel']
  assert not np.allclose(g_kernel(with_class), g_kernel(without))  # G feels the class loss.
  _, r1_metrics = step(1.0, r1_weight=1.0)
  assert np.isfinite(float(r1_metrics['r1'])) and float(r1_metrics['r1']) > 0
