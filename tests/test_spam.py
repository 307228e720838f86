"""Tests for the SMS spam experiment: models, data preparation, training, results and predict."""

import functools
import json
import os
from pathlib import Path
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax import experiment as experiments, spam
from aml2_jax.datasets import files as data_files
from aml2_jax.spam import input_pipeline, seeds, train as spam_train
from aml2_jax.spam.models import make_model
from aml2_jax.spam.predict import read_messages
from aml2_jax.training.config import load_config
from aml2_jax.errors import UserError
from aml2_jax.training.param_summary import count_params
from aml2_jax.datasets.tokenizer import Tokenizer
from conftest import launch

_SPAM_WORDS = 'win free prize cash claim call now txt urgent reply'.split()
_HAM_WORDS = 'ok see you later lunch home love sorry going tonight'.split()
_RESULT_FIELDS = ('test_accuracy', 'test_precision', 'test_recall', 'test_f1', 'test_mcc',
                  'test_ham_fpr', 'test_roc_auc', 'test_pr_auc', 'test_confusion_matrix',
                  'num_params')


def _synthetic_corpus(num: int = 120, seed: int = 0) -> tuple[list[str], list[int]]:
  """Messages of class words plus a word unique to each message; a quarter spam, 5 duplicates."""
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for i in range(num):
    label = int(i % 4 == 0)
    words = rng.choice(_SPAM_WORDS if label else _HAM_WORDS, size=rng.integers(3, 9))
    texts.append(' '.join(words) + f' the u{i}')
    labels.append(label)
  for i in range(5):  # Exact repeats, as the real corpus has.
    texts.append(texts[i])
    labels.append(labels[i])
  return texts, labels


def _write_corpus(root: Path, texts, labels) -> Path:
  """A data root with `sms_spam/spam.csv` (Kaggle format, which has no checksum to match)."""
  folder = root / 'sms_spam'
  folder.mkdir(parents=True, exist_ok=True)
  rows = ['v1,v2'] + [f'{"spam" if y else "ham"},"{t}"' for t, y in zip(texts, labels)]
  (folder / 'spam.csv').write_text('\n'.join(rows) + '\n', encoding='utf-8')
  return root


@pytest.fixture(name='tiny_root', scope='module')
def fixture_tiny_root(tmp_path_factory) -> Path:
  return _write_corpus(tmp_path_factory.mktemp('sms_root'), *_synthetic_corpus())


def _config(name: str, root: Path | None = None, **data):
  config = load_config(name, 'smoke')
  if root is not None:
    config.data.dir = str(root)
  for key, value in data.items():
    config.data[key] = value
  return config


# ---------------------------------------------------------------- models


@pytest.mark.parametrize('name, expected', [('spam_rnn', 261_361), ('spam_lstm', 260_657)])
def test_exact_parameter_counts_and_summary(name, expected, capsys, tmp_path):
  config = load_config(name)
  assert count_params(jax.eval_shape(lambda: spam_train.create_train_state(config)).params) == expected
  experiments.run(config, 'summary', tmp_path, experiments.ModeOptions())
  assert capsys.readouterr().out.splitlines()[-1].split()[-1] == f'{expected:,}'


@pytest.mark.parametrize('name', ['spam_rnn', 'spam_lstm'])
def test_output_shapes_and_dropout(name):
  config = load_config(name)
  model = make_model(config)
  ids = jnp.asarray(np.random.default_rng(0).integers(0, 5000, (3, 7)), jnp.int32)
  params = jax.jit(model.init)(jax.random.key(0), ids)['params']
  apply = jax.jit(model.apply, static_argnames='train')
  logits = apply({'params': params}, ids)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  trained = apply({'params': params}, ids, train=True, rngs={'dropout': jax.random.key(1)})
  # Only the RNN has dropout (0.25 after its dense layer); the LSTM's train mode is deterministic.
  assert np.allclose(trained, logits) == (config.model.dropout == 0)


def test_embedding_starts_as_keras_uniform():
  params = spam_train.create_train_state(load_config('spam_lstm')).params
  table = np.asarray(params['embedding']['embedding'])
  assert table.shape == (5000, 50)
  assert np.abs(table).max() <= 0.05 and np.abs(table).max() > 0.049  # Keras: U(-0.05, 0.05).


# ---------------------------------------------------------------- data preparation


def test_tokenizer_fit_on_train_split_only_unless_asked(tiny_root):
  config = _config('spam_lstm', tiny_root)
  corpus = input_pipeline.load_corpus(config)
  train_idx, test_idx = input_pipeline.split_indices(corpus, config)
  test_only = {f'u{i}' for i in range(120)} & {w for i in test_idx for w in corpus.texts[i].split()}
  assert test_only
  fit_train = input_pipeline.prepare_split(corpus, config).tokenizer.word_index
  assert not test_only & set(fit_train)
  config.data.tokenizer_fit = 'all'
  assert test_only <= set(input_pipeline.prepare_split(corpus, config).tokenizer.word_index)


def test_prepare_split_encodes_pre_padded_and_dedups(tiny_root):
  config = _config('spam_lstm', tiny_root)
  corpus = input_pipeline.load_corpus(config)
  assert len(corpus) == 120  # The 5 repeats are gone.
  assert len(input_pipeline.load_corpus(_config('spam_lstm', tiny_root, dedup=False))) == 125
  split = input_pipeline.prepare_split(corpus, config)
  assert split.train_ids.shape == (96, 30) and split.test_ids.shape == (24, 30)
  assert split.train_ids.dtype == np.int32 and split.test_labels.sum() == 6  # Stratified 30 * 0.2.
  # Messages are shorter than maxlen: padding on the left, the last word in the last column.
  assert np.all(split.train_ids[:, 0] == 0) and np.all(split.train_ids[:, -1] > 0)
  # The last word of every message is its unique word: known in train, unknown (dropped) in test.
  last_word = split.tokenizer.word_index
  assert all(split.train_ids[k, -1] == last_word[f'u{i}']
             for k, i in enumerate(input_pipeline.split_indices(corpus, config)[0]))


def test_run_configs_give_each_seed_its_own_split():
  config = load_config('spam_rnn')
  config.num_seeds, config.seed, config.data.split_seed = 3, 10, 5
  runs = seeds.run_configs(config)
  assert [(r.seed, r.data.split_seed, r.num_seeds) for r in runs] == [(10, 5, 1), (11, 6, 1),
                                                                     (12, 7, 1)]
  config.data.split_per_seed = False
  assert [r.data.split_seed for r in seeds.run_configs(config)] == [5, 5, 5]
  assert config.seed == 10  # The caller's config is not changed.


needs_real = pytest.mark.skipif(
    not (Path(os.environ.get(data_files.ENV_VAR, '/nonexistent')) / 'sms_spam'
         / 'SMSSpamCollection').is_file(),
    reason='real SMS data not found: set AML2_DATA_DIR (e.g. /work/shared/data)')


@needs_real
def test_real_corpus_split_sizes_and_no_leak_after_dedup():
  config = load_config('spam_lstm')
  corpus = input_pipeline.load_corpus(config)
  train_idx, test_idx = input_pipeline.split_indices(corpus, config)
  assert (len(train_idx), len(test_idx), int(corpus.labels[test_idx].sum())) == (4136, 1035, 131)
  assert not {corpus.texts[i] for i in test_idx} & {corpus.texts[i] for i in train_idx}
  config.data.dedup = False
  corpus = input_pipeline.load_corpus(config)
  train_idx, test_idx = input_pipeline.split_indices(corpus, config)
  assert (len(train_idx), len(test_idx), int(corpus.labels[test_idx].sum())) == (4460, 1114, 149)
  # Without dedup, copies of training messages do land in the test set.
  assert len({corpus.texts[i] for i in test_idx} & {corpus.texts[i] for i in train_idx}) > 30


# ---------------------------------------------------------------- training


@functools.partial(jax.jit, static_argnums=0)
def _batch_loss(model, params, data, idx):
  logits = model.apply({'params': params}, data['ids'][idx])
  labels = data['labels'][idx].astype(jnp.float32)
  return jnp.mean(jnp.logaddexp(0.0, logits) - labels * logits)


# Loss on the first 32 synthetic training messages at init and after one step (seed 0). A change
# of initialiser, model, loss or optimizer moves these: update them only if you meant to.
_GOLDEN_LOSSES = {'spam_rnn': (0.685059, 0.658303), 'spam_lstm': (0.700149, 0.694336)}


@pytest.mark.parametrize('name', ['spam_rnn', 'spam_lstm'])
def test_one_training_step_lowers_the_loss_and_moves_every_parameter(name, tiny_root):
  config = _config(name, tiny_root)
  split = input_pipeline.prepare_split(input_pipeline.load_corpus(config), config)
  data = {'ids': jnp.asarray(split.train_ids), 'labels': jnp.asarray(split.train_labels)}
  model = make_model(config)
  step = jax.jit(functools.partial(spam_train.train_step, model=model, tx=spam_train.make_optimizer(config)))
  state = spam_train.create_train_state(config)
  idx = jnp.arange(32)
  before = float(_batch_loss(model, state.params, data, idx))
  new_state, metrics = step(state, data, idx)
  after = float(_batch_loss(model, new_state.params, data, idx))
  assert int(new_state.step) == 1 and np.isfinite(float(metrics['loss']))
  assert after < before
  assert (before, after) == pytest.approx(_GOLDEN_LOSSES[name], rel=1e-4), (
      'the golden losses changed: if on purpose, update _GOLDEN_LOSSES')
  # Embedding rows of words absent from the batch get zero gradient; all other leaves all move.
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                       state.params, new_state.params)
  assert all(jax.tree.leaves(moved)), moved


def test_evaluation_compiles_once_for_any_params_and_size(tiny_root):
  config = _config('spam_lstm', tiny_root)
  split = input_pipeline.prepare_split(input_pipeline.load_corpus(config), config)
  model = make_model(config)
  for seed in (0, 1):  # New params each epoch must not recompile (they are an argument).
    config.seed = seed
    metrics = spam_train.evaluate_split(model, spam_train.create_train_state(config).params,
                                        split.test_ids, split.test_labels)
  spam_train.logits_fn(model)(spam_train.create_train_state(config).params, split.train_ids[:3])
  assert spam_train.logits_fn(model).jitted._cache_size() == 1  # pylint: disable=protected-access
  assert metrics['confusion_matrix'][0][0] + metrics['confusion_matrix'][0][1] == 18


@pytest.fixture(name='trained', scope='module')
def fixture_trained(tiny_root, tmp_path_factory) -> tuple[Path, dict]:
  """The LSTM smoke config trained for two seeds on the synthetic corpus (in this process)."""
  config = _config('spam_lstm', tiny_root)
  config.num_seeds = 2
  config.optim.learning_rate = 1e-2  # Learns the synthetic words in the smoke run's 12 steps.
  workdir = tmp_path_factory.mktemp('spam_run')
  return workdir, spam.train_and_evaluate(config, workdir)


def test_training_writes_results_for_every_seed_and_their_summary(trained):
  workdir, summary = trained
  assert json.loads((workdir / 'results.json').read_text()) == summary
  per_seed = [json.loads((workdir / f'seed_{s}' / 'results.json').read_text()) for s in (0, 1)]
  for results in per_seed:
    assert set(_RESULT_FIELDS) <= set(results)
    assert results['num_params'] == 260_657 and results['num_test'] == 24
    assert np.sum(results['test_confusion_matrix']) == 24
  assert [r['split_seed'] for r in per_seed] == [0, 1]
  accuracy = [r['test_accuracy'] for r in per_seed]
  assert summary['test_accuracy'] == pytest.approx(np.mean(accuracy))
  assert summary['test_accuracy_std'] == pytest.approx(np.std(accuracy, ddof=1))
  assert np.sum(summary['test_confusion_matrix']) == 48
  # The classes are separable by word: two short epochs already rank spam above ham.
  assert summary['test_roc_auc'] > 0.9
  for s in (0, 1):
    run = workdir / f'seed_{s}'
    assert (run / spam_train.TOKENIZER_FILE).is_file()
    epochs = [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines()]
    assert [e['epoch'] for e in epochs] == [1, 2] and 'val_f1' in epochs[-1]
    assert epochs[-1]['val_accuracy'] == pytest.approx(per_seed[s]['test_accuracy'])


def test_predict_in_a_fresh_process(trained, tmp_path):
  workdir, _ = trained
  messages = ['', 'qwxz zzkj', 'win free prize cash claim now', 'see you later at home love',
              'Ünïcödé 🙂 win — ça va? ' * 3, 'win free prize ' * 2000]
  expected = spam.predict(load_config('spam_lstm', 'smoke'), workdir,
                          experiments.ModeOptions(text=tuple(messages)))
  lines = tmp_path / 'messages.txt'
  lines.write_text('win free prize cash\r\n\nsee you later\n', encoding='utf-8')
  result = launch('--config=configs/spam_lstm.py:smoke', f'--workdir={workdir}', '--mode=predict',
                  *[f'--text={m}' for m in messages], f'--input={lines}')
  assert result.returncode == 0, result.stderr
  rows = result.stdout.splitlines()[1:]
  assert len(rows) == len(messages) + 3  # The final newline does not add a message.
  probs = [float(row.split()[0]) for row in rows]
  np.testing.assert_allclose(probs[:len(messages)], expected, atol=1e-4)
  assert [row.split()[1] for row in rows[:4]][2:] == ['spam', 'ham']
  assert rows[0].split()[2] == '0' and probs[0] == probs[1]  # No known word: the same answer.
  assert probs[len(messages) + 1] == probs[0]  # The empty line is an empty message.


def test_predict_refuses_a_file_that_is_not_utf8(trained, tmp_path):
  bad = tmp_path / 'latin1.txt'
  bad.write_bytes('ok\nWIN £100\n'.encode('latin-1'))
  options = experiments.ModeOptions(input=str(bad))
  with pytest.raises(UserError) as excinfo:
    spam.predict(load_config('spam_lstm', 'smoke'), trained[0], options)
  assert str(excinfo.value) == (f'--input={bad}:2: not valid UTF-8 (byte 0xa3); re-save the file '
                                'as UTF-8.')


def test_predict_without_a_checkpoint_says_how_to_train(tmp_path):
  options = experiments.ModeOptions(text=('hi',))
  with pytest.raises(UserError, match='train it first: python launch.py '
                     rf'--config=configs/spam_rnn.py --workdir={tmp_path}$'):
    spam.predict(load_config('spam_rnn'), tmp_path, options)
  assert not (tmp_path / 'seed_0').exists()  # Looking did not create a run folder.


def test_restore_refuses_a_different_vocabulary_or_model(trained, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(trained[0], workdir)
  config = load_config('spam_lstm', 'smoke')
  options = experiments.ModeOptions(text=('hi',))
  with pytest.raises(UserError, match='different model'):
    spam.predict(load_config('spam_rnn', 'smoke'), workdir, options)
  Tokenizer.fit(['another vocabulary'], 5000).save(workdir / 'seed_0' / spam_train.TOKENIZER_FILE)
  with pytest.raises(UserError, match='not the vocabulary the checkpoint was trained with'):
    spam.predict(config, workdir, options)


def test_resuming_with_other_data_is_refused_and_keeps_the_vocabulary(trained, tiny_root,
                                                                      tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(trained[0], workdir)
  vocab = (workdir / 'seed_0' / spam_train.TOKENIZER_FILE).read_bytes()
  with pytest.raises(UserError, match='different data'):
    spam.train_and_evaluate(_config('spam_lstm', tiny_root, dedup=False), workdir)
  assert (workdir / 'seed_0' / spam_train.TOKENIZER_FILE).read_bytes() == vocab


def test_eval_mode_reproduces_the_training_results(trained, tiny_root, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(trained[0], workdir)
  config = _config('spam_lstm', tiny_root)
  config.num_seeds = 2
  summary = spam.evaluate(config, workdir)
  for name in ('test_accuracy', 'test_f1', 'test_roc_auc', 'test_loss', 'train_wall_s'):
    assert summary[name] == pytest.approx(trained[1][name], abs=1e-6)


# ---------------------------------------------------------------- results and inputs


def test_summarize_mean_std_and_summed_confusion():
  config = load_config('spam_rnn')
  runs = {s: {'num_params': 1, 'split_seed': s, 'test_accuracy': acc,
              'test_confusion_matrix': [[s, 1], [2, 3]]} for s, acc in ((0, 0.9), (1, 1.0))}
  summary = seeds.summarize(config, runs)
  assert summary['test_accuracy'] == pytest.approx(0.95)
  assert summary['test_accuracy_std'] == pytest.approx(np.sqrt(0.005))  # Sample std (ddof=1).
  assert summary['test_confusion_matrix'] == [[1, 2], [4, 6]]
  assert 'test_f1' not in summary and summary['num_seeds'] == 2


def test_read_messages_one_per_line(tmp_path):
  path = tmp_path / 'in.txt'
  path.write_bytes('\ufeffa\r\n\nb\u2028still b\n'.encode('utf-8'))
  assert read_messages(str(path)) == ['a', '', 'b\u2028still b']
  path.write_bytes(b'')
  assert read_messages(str(path)) == []
  with pytest.raises(UserError, match='cannot read --input='):
    read_messages(str(tmp_path / 'missing.txt'))


@pytest.mark.parametrize('field, value, message', [
    ('model.cell', 'gru', 'use "simple" or "lstm"'),
    ('data.tokenizer_fit', 'test', 'tokenizer_fit'),
    ('data.test_fraction', 0.0, 'test_fraction'),
    ('num_seeds', 0, 'num_seeds'),
])
def test_check_config_refuses_bad_values(field, value, message):
  config = load_config('spam_rnn')
  group, _, name = field.rpartition('.')
  (config[group] if group else config)[name] = value
  with pytest.raises(UserError, match=message):
    spam.check_config(config)
