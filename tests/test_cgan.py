"""The conditional GAN: sizes, one train step, conditioning, the quality metrics, sampling.

FID, the losses and the moving average are pinned by hand in `test_gan_maths.py`.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax import cgan, fmnist_classifier
from aml2_jax.datasets import fashion_mnist
from aml2_jax.cgan import generate, judge as judge_lib, metrics as gan_metrics, quality
from aml2_jax.cgan import train as cgan_train
from aml2_jax.cgan.models import make_model
from aml2_jax.errors import UserError
from aml2_jax.fmnist_classifier import train as classifier_train
from aml2_jax.training.config import load_config
from aml2_jax.training.param_summary import count_params
from conftest import launch


@pytest.fixture(scope='module')
def config():
  return load_config('cgan', 'smoke')


def _step_fn(config):
  return functools.partial(cgan_train.train_step, latent_dim=config.model.latent_dim,
                           real_label=config.optim.real_label, ema_decay=config.optim.g_ema_decay)


def _random_data(num=128):
  rng = np.random.default_rng(0)
  return {'images': jnp.asarray(rng.integers(0, 256, (num, 784), dtype=np.uint8)),
          'labels': jnp.asarray(np.arange(num, dtype=np.int32) % 10)}


def test_exact_parameter_counts(config):
  state = jax.eval_shape(lambda: cgan_train.create_train_state(config))
  assert count_params(state.g.params) == 1_489_012
  assert count_params(state.d.params) == 1_470_565


def test_output_shapes_and_ranges(config):
  state = cgan_train.create_train_state(config)
  g, d = make_model(config)
  noise = jax.random.normal(jax.random.key(1), (6, 100)) * 10  # Large inputs saturate tanh.
  images = g.apply({'params': state.g.params}, noise, jnp.arange(6))
  assert images.shape == (6, 784)
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  logits = d.apply({'params': state.d.params}, images, jnp.arange(6), train=False)
  assert logits.shape == (6,)


def test_one_step_changes_every_parameter_of_both_nets(config):
  state = cgan_train.create_train_state(config)
  new_state, metrics = jax.jit(_step_fn(config))(state, _random_data(), jnp.arange(64))
  nets = {'g.params': lambda s: s.g.params, 'g_ema': lambda s: s.g_ema,
          'd.params': lambda s: s.d.params}
  for name, net in nets.items():
    before, after = net(state), net(new_state)
    unchanged = [jax.tree_util.keystr(path) for path, b, a in zip(
        jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(before), jax.tree.leaves(after))
        if np.array_equal(b, a)]
    # Only label-embedding rows of classes absent from the batch may stay; here all 10 appear.
    assert not unchanged, f'{name} left unchanged by a step: {unchanged}'
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert int(new_state.step) == 1


def test_label_changes_the_generated_image(config):
  state = cgan_train.create_train_state(config)
  draw = lambda label: generate.generate(config, state.g.params, np.array([label]), seed=3)
  # Same seed and batch position, so the same noise; only the label differs.
  shirt, boot = draw(0), draw(9)
  assert shirt.shape == (1, 28, 28) and shirt.dtype == np.uint8
  assert np.abs(shirt.astype(int) - boot.astype(int)).max() > 0
  assert np.array_equal(draw(0), shirt)  # Deterministic for a seed.


def test_discriminator_dropout_only_in_training(config):
  _, d = make_model(config)
  images, labels = jnp.zeros((4, 784)), jnp.arange(4)
  params = d.init(jax.random.key(0), images, labels, train=False)
  run = lambda seed: d.apply(params, images, labels, train=True, rngs={'dropout': jax.random.key(seed)})
  assert not np.allclose(run(0), run(1))
  np.testing.assert_array_equal(run(0), run(0))
  no_dropout = d.clone(dropout=0.0)  # Evaluation needs no rng and drops nothing.
  np.testing.assert_array_equal(d.apply(params, images, labels, train=False),
                                no_dropout.apply(params, images, labels, train=True))


def test_class_entropy_and_per_class_accuracy():
  assert gan_metrics.class_entropy(np.arange(1000) % 10) == pytest.approx(np.log(10))
  assert gan_metrics.class_entropy(np.zeros(50, int)) == 0.0
  per_class = gan_metrics.per_class_accuracy(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
  np.testing.assert_allclose(per_class, [1.0, 0.5, 1.0])


def test_judge_recipe_warms_up_then_decays_by_a_cosine_to_zero():
  config = load_config('fmnist_classifier')
  steps = config.num_epochs * (60000 // config.batch_size)
  warmup = round(config.optim.warmup_fraction * steps)
  peak = config.optim.learning_rate
  schedule = classifier_train.learning_rate_schedule(config, 60000)
  for step, want in ((0, 0.0), (warmup // 2, peak * (warmup // 2) / warmup), (warmup, peak),
                     ((warmup + steps) // 2, peak / 2), (steps, 0.0)):
    assert float(schedule(step)) == pytest.approx(want, rel=1e-3, abs=1e-9), step


def test_judge_learning_rate_is_read_inside_the_optimizer_at_each_step():
  config = load_config('fmnist_classifier')
  tx = jax.eval_shape(lambda: classifier_train.create_train_state(config, 60000)).tx  # Static.
  params = {'w': jnp.zeros(3)}
  grads = {'w': jnp.array([1.0, -2.0, 0.5])}
  opt_state = tx.init(params)
  first, opt_state = tx.update(grads, opt_state, params)
  second, _ = tx.update(grads, opt_state, params)
  schedule = classifier_train.learning_rate_schedule(config, 60000)
  np.testing.assert_array_equal(first['w'], 0.0)  # The warm-up starts at 0.
  # Adam's bias-corrected direction for a repeated gradient is its sign, up to float32 rounding
  # of its bias correction 1 - 0.999^2 = 0.001999, a cancellation: relative error ~2^-24 / 0.002.
  np.testing.assert_allclose(second['w'], -float(schedule(1)) * np.sign(grads['w']), rtol=1e-4)


def test_a_missing_judge_is_refused_with_the_command_that_trains_it(tmp_path):
  config = load_config('cgan', 'smoke')
  with pytest.raises(UserError, match=r'^no trained judge in \S+/fmnist_classifier; train it with '
                                      r'`python launch.py --config=configs/fmnist_classifier.py:'
                                      r'smoke --workdir=\S+/fmnist_classifier`'):
    judge_lib.Judge(config, tmp_path / 'cgan')


@pytest.mark.long  # Trains the judge (a whole smoke run) first.
def test_conditional_accuracy_on_real_images_equals_classifier_accuracy(tiny_fmnist_root, tmp_path,
                                                                         capsys):
  cgan_config = load_config('cgan', 'smoke')
  cgan_config.data.dir = str(tiny_fmnist_root)
  judge = judge_lib.ensure_judge(cgan_config, tmp_path / 'cgan')  # Trains it: none is there yet.
  assert 'judge: training the Fashion-MNIST classifier in' in capsys.readouterr().out
  assert judge.train_seconds > 0 and judge.workdir == tmp_path / 'fmnist_classifier'
  results = json.loads((judge.workdir / 'results.json').read_text())
  again = judge_lib.ensure_judge(cgan_config, tmp_path / 'cgan')  # Restores it.
  assert 'judge: the trained classifier in' in capsys.readouterr().out
  assert again.train_seconds == 0
  for a, b in zip(jax.tree.leaves(judge.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)
  data = fmnist_classifier.load_data(judge.config)
  metrics = quality.quality_metrics(judge, data.test_images, data.test_labels,
                                    judge(data.test_images)[1])
  facts = quality.judge_facts(judge, data, judge(data.test_images), seed=0)
  assert metrics['conditional_accuracy'] == pytest.approx(results['test_accuracy'])
  assert metrics['conditional_accuracy'] == facts['classifier_test_accuracy']
  assert metrics['fid'] == pytest.approx(0.0, abs=1e-3)
  assert facts['fid_train_vs_test'] > 0


def test_validation_slice_is_stratified_reproducible_and_the_test_set_stays_apart(tiny_fmnist_root):
  config = load_config('cgan', 'smoke')
  config.data.dir = str(tiny_fmnist_root)
  data = cgan.load_data(config)
  val, test = quality.references(config, data)
  assert (val.name, test.name) == ('val', 'test') and len(val.images) == config.data.val_size
  idx = fashion_mnist.validation_indices(data.train_labels, config.data.val_size,
                                         config.data.split_seed)
  np.testing.assert_array_equal(idx, fashion_mnist.validation_indices(
      data.train_labels, config.data.val_size, config.data.split_seed))
  np.testing.assert_array_equal(val.images, data.train_images[idx])  # Training images only.
  shares = np.bincount(val.labels, minlength=10) / len(val.labels)
  expected = np.bincount(data.train_labels, minlength=10) / len(data.train_labels)
  np.testing.assert_allclose(shares, expected, atol=0.02)
  config.data.val_size = 0
  assert [r.name for r in quality.references(config, data)] == ['test']


@pytest.mark.long
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


@pytest.mark.long
def test_train_and_eval_announce_the_judge_as_their_first_step(tiny_fmnist_root, tmp_path):
  workdir = tmp_path / 'cgan'
  common = ['--config=configs/cgan.py:smoke', f'--config.data.dir={tiny_fmnist_root}',
            f'--workdir={workdir}']
  trained = launch(*common, timeout=900)
  assert trained.returncode == 0, trained.stderr[-2000:]
  lines = ('step 1/3: judge\njudge: training the Fashion-MNIST classifier in',
           'step 2/3: GAN training (1 epoch', 'step 3/3: evaluation')
  positions = [trained.stdout.find(line) for line in lines]
  assert -1 not in positions and positions == sorted(positions), trained.stdout
  seconds = json.loads((workdir / 'results.json').read_text())['seconds']
  assert min(seconds[k] for k in ('judge_training', 'gan_training', 'evaluation')) > 0, seconds
  evaluated = launch(*common, '--mode=eval', timeout=900)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert 'step 1/2: judge\njudge: the trained classifier in' in evaluated.stdout
  assert 'step 2/2: evaluation' in evaluated.stdout
  assert json.loads((workdir / 'results.json').read_text())['seconds']['judge_training'] == 0


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
  result = launch('--config=configs/cgan.py:smoke', '--mode=sample', f'--workdir={tmp_path}')
  assert result.returncode == 2
  assert result.stderr.startswith('error: no checkpoint in') and 'Traceback' not in result.stderr
