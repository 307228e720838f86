"""Tests for the text generator: models, optimizer schedule, train step, sampling, end to end."""

import csv
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aml2_jax import textgen
from aml2_jax.datasets import char_corpus
from aml2_jax.textgen import generate, input_pipeline, optim, train as textgen_train
from aml2_jax.textgen.generate import CharSampler
from aml2_jax.errors import UserError
from aml2_jax.layers.recurrent import Recurrent
from aml2_jax.textgen.models import CharModel, make_model
from aml2_jax.training.config import load_config
from conftest import launch
from test_char_corpus import REAL_ROOT, needs_real

WINDOW = 20  # Window of the tiny train-step tests.


def _config(name='textgen_lstm', variant='smoke', **overrides):
  config = load_config(name, variant)
  for key, value in overrides.items():
    group, field = key.split('.') if '.' in key else (None, key)
    (config[group] if group else config)[field] = value
  return config


def _perturbed_params(model, ids, seed=0):
  """Initialised params with every leaf perturbed, so zero biases cannot hide a wrong slice."""
  params = jax.jit(model.init)(jax.random.key(seed), ids)['params']
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(treedef, [p + 0.3 * jax.random.normal(k, p.shape)
                                      for p, k in zip(leaves, keys)])


@needs_real
@pytest.mark.parametrize('name, expected', [('textgen_rnn', 142_731), ('textgen_lstm', 141_045)])
@pytest.mark.parametrize('objective', char_corpus.OBJECTIVES)
@pytest.mark.parametrize('dropouts', [{}, {'model.input_dropout': 0.1,
                                           'model.recurrent_dropout': 0.2}])
def test_exact_param_counts_on_the_real_corpus(name, expected, objective, dropouts):
  config = _config(name, '', objective=objective, **{'data.dir': str(REAL_ROOT), **dropouts})
  vocab = input_pipeline.load_corpus(config).vocab
  assert vocab.size == 117
  params = jax.eval_shape(lambda: textgen_train.create_train_state(config, vocab.size)).params
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == expected


@pytest.mark.parametrize('cell', ['simple', 'lstm'])
def test_lookup_input_equals_one_hot_times_weight(cell):
  vocab = 13
  ids = np.random.default_rng(0).integers(0, vocab, (3, 9)).astype(np.int32)
  model = CharModel(vocab, 6, cell, all_steps=True)
  params = _perturbed_params(model, ids)
  _, logits = model.apply({'params': params}, ids)
  _, last_logits = model.clone(all_steps=False).apply({'params': params}, ids)
  # The same maths with the one-hot input multiplied by the same kernel.
  _, h = Recurrent(6, cell=cell).apply({'params': params['recurrent']}, jax.nn.one_hot(ids, vocab))
  expected = h @ params['dense']['kernel'] + params['dense']['bias']
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  np.testing.assert_allclose(last_logits, expected[:, -1], atol=1e-5)


def test_all_chars_logits_are_causal():
  ids = np.random.default_rng(1).integers(0, 13, (2, 10)).astype(np.int32)
  model = CharModel(13, 6, 'lstm', all_steps=True)
  params = {'params': _perturbed_params(model, ids)}
  changed = ids.copy()
  changed[:, 6:] = (changed[:, 6:] + 1) % 13
  _, before = model.apply(params, ids)
  _, after = model.apply(params, changed)
  np.testing.assert_allclose(before[:, :6], after[:, :6], atol=1e-6)
  assert not np.allclose(before[:, 6:], after[:, 6:])


def _tiny_state_and_step(config, vocab_size=11, text_len=400):
  text = (np.arange(text_len) * 7 % vocab_size).astype(np.int32)  # Predictable: i -> i + 7.
  starts = char_corpus.window_starts(text_len, config.data.window, config.objective)
  model = make_model(config, vocab_size)
  step = jax.jit(functools.partial(
      textgen_train.train_step, all_steps=model.all_steps, window=config.data.window,
      learning_rate=config.optim.learning_rate))
  return textgen_train.create_train_state(config, vocab_size), step, {'text': text, 'starts': starts}


@functools.partial(jax.jit, static_argnums=0)
def _batch_loss(model, state, data, batch_idx):
  ids = char_corpus.gather_windows(data['text'], data['starts'][batch_idx], WINDOW)
  targets = ids[:, 1:] if model.all_steps else ids[:, -1]
  _, logits = model.apply({'params': state.params}, ids[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


@pytest.mark.parametrize('name, objective', [('textgen_rnn', 'next_char'),
                                             ('textgen_lstm', 'all_chars')])
def test_one_train_step_on_a_tiny_text_lowers_the_loss(name, objective):
  config = _config(name, objective=objective, **{'data.window': WINDOW, 'model.dropout': 0.0})
  state, step, data = _tiny_state_and_step(config)
  model, batch_idx = make_model(config, 11), jnp.arange(8)
  before = float(_batch_loss(model, state, data, batch_idx))
  new_state, metrics = step(state, data, batch_idx)
  assert metrics['loss'] == pytest.approx(before, rel=1e-5)  # The step saw the same windows.
  assert float(_batch_loss(model, new_state, data, batch_idx)) < before - 0.05
  assert int(new_state.step) == 1


def test_train_step_multiplies_updates_by_the_plateau_scale():
  config = _config(**{'data.window': WINDOW})
  state, step, data = _tiny_state_and_step(config)
  full, _ = step(state, data, jnp.arange(8))
  scaled_state = state.replace(
      opt_state=optax.tree_utils.tree_set(state.opt_state, scale=jnp.float32(0.2)))
  scaled, metrics = step(scaled_state, data, jnp.arange(8))
  delta = lambda s: jax.tree.map(lambda a, b: a - b, s.params, state.params)
  jax.tree.map(lambda d_full, d_scaled: np.testing.assert_allclose(0.2 * d_full, d_scaled,
                                                                   rtol=1e-4, atol=1e-7),
               delta(full), delta(scaled))
  assert float(metrics['lr']) == pytest.approx(0.2 * config.optim.learning_rate)


def test_plateau_lowers_the_lr_by_0_2_after_a_flat_epoch():
  config = _config()
  tx, params = optim.make_optimizer(config, steps_per_epoch=2), jnp.zeros(3)
  opt_state, scales = tx.init(params), []
  # Epoch means: improves, flat (improvement < atol 1e-4), improves, flat, flat.
  for loss in (2.0, 1.99995, 1.5, 1.5, 1.5):
    _, opt_state = tx.update(jnp.ones(3), opt_state, params, value=loss - 0.25)
    mid_epoch = float(optim.plateau_scale(opt_state))
    _, opt_state = tx.update(jnp.ones(3), opt_state, params, value=loss + 0.25)
    scales.append(float(optim.plateau_scale(opt_state)))  # Decided on the two steps' mean.
    assert mid_epoch == (scales[-2] if len(scales) > 1 else 1.0)  # Only an epoch's end decides.
  np.testing.assert_allclose(scales, [1.0, 0.2, 0.2, 0.04, 0.008], rtol=1e-6)


def test_optimizer_is_keras_rmsprop():
  """Keras: v = 0.9 v + 0.1 g^2; w -= lr g / sqrt(v + 1e-7); here on a tiny gradient."""
  tx = optim.make_optimizer(_config())
  params, grad = jnp.zeros(3), jnp.array([1e-4, -0.5, 2.0])
  updates, _ = tx.update(grad, tx.init(params), params, value=1.0)
  expected = -0.01 * grad / np.sqrt(0.1 * grad**2 + 1e-7)
  np.testing.assert_allclose(updates, expected, rtol=1e-5)



def _dropout_model(**rates):
  return CharModel(13, 8, 'lstm', all_steps=True, **rates)


DROPOUTS = dict(dropout=0.3, input_dropout=0.2, recurrent_dropout=0.3)


def test_dropout_options_keep_the_parameters_and_are_off_at_eval():
  ids = np.random.default_rng(2).integers(0, 13, (4, 12)).astype(np.int32)
  plain, dropped = _dropout_model(), _dropout_model(**DROPOUTS)
  params = _perturbed_params(plain, ids)
  shapes = lambda m: jax.tree.map(jnp.shape, jax.eval_shape(m.init, jax.random.key(0), ids))
  assert shapes(plain) == shapes(dropped)
  _, evaluated = dropped.apply({'params': params}, ids)
  np.testing.assert_array_equal(evaluated, plain.apply({'params': params}, ids)[1])
  train = lambda seed: dropped.apply({'params': params}, ids, train=True,
                                     rngs={'dropout': jax.random.key(seed)})[1]
  assert not np.allclose(train(0), evaluated)
  np.testing.assert_array_equal(train(0), train(0))


def test_recurrent_dropout_drops_the_same_units_at_every_step():
  # Identity recurrence, zero input kernel: h_t = tanh(bias + m * h_{t-1}) per unit, so a
  # dropped unit (m = 0) stays at tanh(bias) at every step and a kept one moves.
  layer = Recurrent(16, cell='simple', vocab_size=3, recurrent_dropout=0.5)
  ids = jnp.zeros((8, 6), jnp.int32)
  params = {'kernel': jnp.zeros((3, 16)), 'bias': jnp.full((16,), 0.5),
            'cell': {'recurrent_kernel': jnp.eye(16)}}
  _, h = layer.apply({'params': params}, ids, deterministic=False,
                     rngs={'dropout': jax.random.key(0)})
  at_bias = np.isclose(np.asarray(h[:, 1:]), np.tanh(0.5), atol=1e-6)  # [batch, time - 1, units]
  assert np.all(at_bias.all(axis=1) | ~at_bias.any(axis=1))  # All steps or none.
  assert 0.2 < at_bias[:, 0].mean() < 0.8  # About half the units dropped.


def test_input_dropout_drops_a_character_for_the_whole_window():
  layer = Recurrent(4, cell='simple', vocab_size=5, input_dropout=0.5)
  ids = jnp.array([[1, 2, 1, 3, 2, 1]] * 16, jnp.int32)
  params = {'kernel': jnp.ones((5, 4)), 'bias': jnp.zeros((4,)),
            'cell': {'recurrent_kernel': jnp.zeros((4, 4))}}  # h_t = tanh(input of step t).
  _, h = layer.apply({'params': params}, ids, deterministic=False,
                     rngs={'dropout': jax.random.key(1)})
  dropped = np.asarray(h[..., 0]) == 0  # [batch, time]
  for char in (1, 2, 3):
    same = dropped[:, np.asarray(ids[0]) == char]
    assert np.all(same.all(axis=1) | ~same.any(axis=1))
  assert 0 < dropped.mean() < 1


def test_cosine_schedule_warms_up_then_decays_and_the_step_logs_it():
  config = _config(**{'optim.optimizer': 'adamw', 'optim.schedule': 'cosine',
                      'optim.learning_rate': 2e-3, 'optim.warmup_epochs': 1, 'num_epochs': 3,
                      'optim.end_lr_fraction': 0.1, 'optim.clip_norm': 1.0})
  rate = optim.learning_rate(config, steps_per_epoch=10)
  np.testing.assert_allclose([rate(0), rate(5), rate(10), rate(20), rate(30)],
                             [0.0, 1e-3, 2e-3, 0.1 * 2e-3 + 0.9 * 2e-3 / 2, 0.1 * 2e-3],
                             rtol=1e-5)
  state = textgen_train.create_train_state(config, 11, steps_per_epoch=10)
  step = jax.jit(functools.partial(
      textgen_train.train_step, all_steps=make_model(config, 11).all_steps,
      window=config.data.window, learning_rate=rate))
  data = {'text': np.arange(400, dtype=np.int32) % 11, 'starts': np.arange(8, dtype=np.int32)}
  state = state.replace(step=jnp.int32(5))
  assert float(step(state, data, jnp.arange(4))[1]['lr']) == pytest.approx(1e-3, rel=1e-5)


def test_weight_average_is_what_validation_sees_and_follows_the_updated_params():
  config = _config(**{'optim.optimizer': 'adamw', 'optim.plateau': False, 'optim.ema_decay': 0.75})
  state = textgen_train.create_train_state(config, 11)
  average = jax.tree.map(np.asarray, state.params)
  grads = jax.tree.map(jnp.ones_like, state.params)
  for _ in range(3):
    state = state.apply_gradients(grads=grads)
    average = jax.tree.map(lambda a, p: 0.75 * a + 0.25 * np.asarray(p), average, state.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               optim.eval_params(state), average)
  assert not np.allclose(average['dense']['bias'], state.params['dense']['bias'])
  config.optim.ema_decay = 0.0  # No average: validation sees the params.
  plain = textgen_train.create_train_state(config, 11)
  assert optim.eval_params(plain) is plain.params


def test_clipping_scales_the_whole_gradient_to_the_clip_norm():
  def second_update(**clip):
    config = _config(**{'optim.optimizer': 'adamw', 'optim.b1': 0.0, 'optim.plateau': False,
                        **clip})
    tx, params = optim.make_optimizer(config), jnp.zeros(2)
    _, state = tx.update(jnp.array([1.0, 0.0]), tx.init(params), params)
    return tx.update(jnp.array([1.0, 1e6]), state, params)[0]
  # Clipped to norm 1, the first coordinate's 1 becomes 1e-6, tiny beside its first-step scale.
  assert abs(float(second_update(**{'optim.clip_norm': 1.0})[0])) < 1e-3 * abs(
      float(second_update()[0]))


def test_random_offset_step_trains_on_the_epochs_windows_of_the_cyclic_text():
  config = _config(objective='all_chars', **{'data.window': WINDOW, 'data.random_offsets': True})
  text = (np.arange(205) * 7 % 11).astype(np.int32)
  starts = char_corpus.cyclic_window_starts(len(text), WINDOW)
  model = make_model(config, 11)
  step = jax.jit(functools.partial(
      textgen_train.train_step, all_steps=model.all_steps, window=WINDOW,
      learning_rate=0.01, offsets=(3, 4)))  # Seed 3, 4 steps an epoch.
  state = textgen_train.create_train_state(config, 11).replace(step=jnp.int32(9))  # Epoch 2.
  data, batch_idx = {'text': text, 'starts': starts}, jnp.array([0, 10])  # 10: wraps round.
  moved = char_corpus.offset_starts(starts[batch_idx], char_corpus.epoch_offset(3, 2, WINDOW),
                                    len(text))
  ids = char_corpus.gather_windows(text, moved, WINDOW, wrap=True)
  _, logits = model.apply({'params': state.params}, ids[:, :-1])
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()
  assert float(step(state, data, batch_idx)[1]['loss']) == pytest.approx(float(expected),
                                                                          rel=1e-5)

def _reference_greedy(model, params, context, length, window):
  """Greedy decoding that reruns the model from zero over the last <= window chars every time."""
  history = list(context)
  apply = jax.jit(model.apply)
  for _ in range(length):
    _, logits = apply({'params': params}, jnp.array([history[-window:]], jnp.int32))
    history.append(int(jnp.argmax(logits[0])))
  return history[len(context):]


@pytest.mark.parametrize('cell', ['simple', 'lstm'])
def test_greedy_sampling_matches_rerunning_the_last_window(cell):
  model = CharModel(13, 8, cell, dropout=0.2, all_steps=True)  # The sampler uses the last step.
  params = _perturbed_params(model, jnp.zeros((1, 5), jnp.int32))
  sampler = CharSampler(model, window=4)
  context = [0, 3]  # Shorter than the window: the sampler switches path after 2 characters.
  got = sampler.generate(params, context, 8, temperature=0.0, seed=0)
  expected = _reference_greedy(model.clone(all_steps=False), params, context, 8, 4)
  assert got == expected
  assert sampler.generate(params, context, 8, temperature=0.0, seed=7) == got


def test_sampling_is_deterministic_for_a_seed():
  model = CharModel(13, 8, 'lstm')
  params = _perturbed_params(model, jnp.zeros((1, 5), jnp.int32))
  sampler = CharSampler(model, window=6)
  draws = [sampler.generate(params, [0], 15, temperature=1.0, seed=s) for s in (1, 1, 2)]
  assert draws[0] == draws[1] and len(draws[0]) == 15
  assert draws[0] != draws[2]


def test_sampling_stops_at_the_end_char_unless_told_not_to():
  model = CharModel(13, 8, 'lstm')
  params = _perturbed_params(model, jnp.zeros((1, 5), jnp.int32))
  params['dense']['bias'] = params['dense']['bias'].at[0].set(100.0)  # Always the end char.
  sampler = CharSampler(model, window=6)
  assert sampler.generate(params, [0], 5, temperature=1.0, seed=0, stop_id=0) == []
  assert sampler.generate(params, [0], 5, temperature=1.0, seed=0) == [0] * 5


def test_prompt_rule_end_char_first_unknown_chars_dropped():
  vocab = char_corpus.build_vocabulary(['Hello there', 'ok'])
  assert generate.prompt_context(vocab, '') == ([vocab.end_id], '', '')
  ids, kept, dropped = generate.prompt_context(vocab, 'He☃llo!')
  assert kept == 'Hello' and dropped == '!☃'
  assert ids == [vocab.end_id] + vocab.encode('Hello').tolist()


def test_bad_config_is_a_user_error():
  with pytest.raises(UserError, match='objective'):
    textgen.check_config(_config(objective='every_char'))
  with pytest.raises(UserError, match='val_fraction'):
    textgen.check_config(_config(**{'data.val_fraction': 0.0}))
  with pytest.raises(UserError, match='test_fraction'):
    textgen.check_config(_config(**{'data.test_fraction': 0.0}))
  with pytest.raises(UserError, match='must be < 1 to leave training messages'):
    textgen.check_config(_config(**{'data.val_fraction': 0.5, 'data.test_fraction': 0.5}))
  with pytest.raises(UserError, match='random_offsets needs'):
    textgen.check_config(_config(**{'data.random_offsets': True}))
  with pytest.raises(UserError, match='optim.optimizer'):
    textgen.check_config(_config(**{'optim.optimizer': 'sgd'}))


def _write_tiny_sms_root(root):
  """A data root with a Kaggle-format spam.csv of 80 short messages (no checksum to match)."""
  rng = np.random.default_rng(0)
  words = ['ok', 'see', 'you', 'free', 'call', 'now', 'lol', 'home', 'txt', 'win', 'later']
  folder = root / 'sms_spam'
  folder.mkdir(parents=True)
  with open(folder / 'spam.csv', 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['v1', 'v2'])
    for i in range(80):
      writer.writerow(['ham' if i % 5 else 'spam', ' '.join(rng.choice(words, 6))])
  return root


@pytest.mark.long
def test_train_then_sample_in_a_fresh_process(tmp_path):
  root = _write_tiny_sms_root(tmp_path / 'data')
  workdir = tmp_path / 'run'
  workdir.mkdir()
  config = _config(**{'data.dir': str(root), 'data.limit_messages': 0, 'data.window': 30})
  results = textgen.train_and_evaluate(config, workdir)
  assert set(results) >= {'val_bpc', 'val_loss', 'test_bpc', 'test_loss', 'train_loss',
                          'num_params', 'epochs', 'wall_s'}
  assert results['epochs'] == config.num_epochs and np.isfinite(results['test_bpc'])
  assert json.loads((workdir / 'results.json').read_text())['test_bpc'] == results['test_bpc']
  vocab = char_corpus.Vocabulary.load(workdir / 'vocab.json')
  params, best_step = textgen_train.restore_best(config, workdir, vocab)
  # The checkpoint is the one of lowest per-epoch validation loss; the test text played no part.
  epochs = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert best_step == min(epochs, key=lambda e: e['val_loss'])['step']
  assert not any(k.startswith('test_') for e in epochs for k in e)
  corpus = input_pipeline.load_corpus(config)
  model = make_model(config, vocab.size)
  assert results['test_bpc'] == pytest.approx(textgen_train.validate(
      config, model, params, corpus.test_ids, part='test')['test_bpc'], rel=1e-6)
  assert results['val_bpc'] != results['test_bpc']
  sampler = CharSampler(make_model(config, vocab.size), config.data.window)
  kept, text = generate.generate_text(sampler, params, vocab, 'see ☃', 40, 0.0, seed=0,
                                     stop_at_end=False)

  sampled = launch('--config=configs/textgen_lstm.py:smoke', f'--workdir={workdir}',
                   f'--config.data.dir={root}', '--config.data.limit_messages=0',
                   '--config.data.window=30', '--mode=sample', '--prompt=see ☃', '--length=40',
                   '--temperature=0', '--nostop_at_end')
  assert sampled.returncode == 0, sampled.stderr
  assert sampled.stdout == kept + text + '\n'
  assert '☃' in sampled.stderr  # The dropped character is reported.


NEW_OPTIONS = {'objective': 'all_chars', 'data.random_offsets': True, 'model.dropout': 0.2,
               'model.recurrent_dropout': 0.2, 'model.input_dropout': 0.1,
               'optim.optimizer': 'adamw', 'optim.learning_rate': 3e-3, 'optim.clip_norm': 1.0,
               'optim.weight_decay': 0.05, 'optim.plateau': False}


@pytest.mark.long
def test_random_offsets_and_dropout_resume_exactly(tmp_path):
  root = _write_tiny_sms_root(tmp_path / 'data')
  config = lambda epochs: _config(num_epochs=epochs, **NEW_OPTIONS, **{
      'data.dir': str(root), 'data.limit_messages': 0, 'data.window': 30,
      'data.max_windows': 0, 'batch_size': 8})
  straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
  for workdir in (straight, resumed):
    workdir.mkdir()
  expected = textgen.train_and_evaluate(config(3), straight)
  textgen.train_and_evaluate(config(1), resumed)
  got = textgen.train_and_evaluate(config(3), resumed)
  for key in ('val_loss', 'test_loss', 'train_loss', 'best_epoch'):
    assert got[key] == expected[key], key
