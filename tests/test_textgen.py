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
from aml2_jax.textgen import generate, input_pipeline, train as textgen_train
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
def test_exact_param_counts_on_the_real_corpus(name, expected, objective):
  config = _config(name, '', objective=objective, **{'data.dir': str(REAL_ROOT)})
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
      textgen_train.train_step, model=model, tx=textgen_train.make_optimizer(config), window=config.data.window,
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
  scaled_state = state.replace(schedule=state.schedule._replace(scale=jnp.float32(0.2)))
  scaled, metrics = step(scaled_state, data, jnp.arange(8))
  delta = lambda s: jax.tree.map(lambda a, b: a - b, s.params, state.params)
  jax.tree.map(lambda d_full, d_scaled: np.testing.assert_allclose(0.2 * d_full, d_scaled,
                                                                   rtol=1e-4, atol=1e-7),
               delta(full), delta(scaled))
  assert float(metrics['lr']) == pytest.approx(0.2 * config.optim.learning_rate)


def test_plateau_lowers_the_lr_by_0_2_after_a_flat_epoch():
  config = _config()
  state = textgen_train.create_train_state(config, vocab_size=11)
  end_epoch = functools.partial(textgen_train.end_epoch,
                                update_plateau=textgen_train.make_plateau_update(config))
  scales = []
  # Improves, flat (improvement < atol 1e-4), improves, flat, flat.
  for loss in (2.0, 1.99995, 1.5, 1.5, 1.5):
    state = end_epoch(state, {'loss': loss})
    scales.append(float(state.schedule.scale))
  np.testing.assert_allclose(scales, [1.0, 0.2, 0.2, 0.04, 0.008], rtol=1e-6)


def test_optimizer_is_keras_rmsprop():
  """Keras: v = 0.9 v + 0.1 g^2; w -= lr g / sqrt(v + 1e-7); here on a tiny gradient."""
  tx = textgen_train.make_optimizer(_config())
  params, grad = jnp.zeros(3), jnp.array([1e-4, -0.5, 2.0])
  updates, _ = tx.update(grad, tx.init(params), params)
  expected = -0.01 * grad / np.sqrt(0.1 * grad**2 + 1e-7)
  np.testing.assert_allclose(updates, expected, rtol=1e-5)


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
