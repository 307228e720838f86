"""Tests for the SMS spam experiment: models, data preparation, training, results and predict."""

import csv
import functools
import json
from pathlib import Path
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from aml2_jax import experiment as experiments, spam
from aml2_jax.spam import input_pipeline, seeds, train as spam_train
from aml2_jax.spam.metrics import binary_metrics
from aml2_jax.spam.models import make_model
from aml2_jax.spam.predict import read_messages
from aml2_jax.training.config import load_config
from aml2_jax.errors import UserError
from aml2_jax.training.checkpointing import Checkpointer, check_compatible
from aml2_jax.training.param_summary import count_params
from aml2_jax.datasets.tokenizer import Tokenizer, normalised_text
from conftest import REAL_ROOT, launch, needs_real

_SPAM_WORDS = 'win free prize cash claim call now txt urgent reply'.split()
_HAM_WORDS = 'ok see you later lunch home love sorry going tonight'.split()
_RESULT_FIELDS = ('test_accuracy', 'test_precision', 'test_recall', 'test_f1', 'test_mcc',
                  'test_ham_fpr', 'test_roc_auc', 'test_pr_auc', 'test_confusion_matrix',
                  'test_precision_weighted', 'test_recall_weighted', 'test_f1_weighted',
                  'val_loss', 'epoch_used', 'epoch_selection', 'split_protocol', 'num_params')


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
  state = jax.eval_shape(lambda: spam_train.create_train_state(config))
  assert count_params(state.params) == expected
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


def test_tokenizer_fit_on_train_part_only_unless_asked(tiny_root):
  config = _config('spam_lstm', tiny_root)
  corpus = input_pipeline.load_corpus(config)
  _, val_idx, test_idx = input_pipeline.split_indices(corpus, config)
  held_out_words = {w for i in np.concatenate([val_idx, test_idx]) for w in corpus.texts[i].split()}
  held_out_only = {f'u{i}' for i in range(120)} & held_out_words
  assert len(held_out_only) == 9 + 24  # The unique words of the validation and test messages.
  fit_train = input_pipeline.prepare_split(corpus, config).tokenizer.word_index
  assert not held_out_only & set(fit_train)
  config.data.tokenizer_fit = 'all'
  assert held_out_only <= set(input_pipeline.prepare_split(corpus, config).tokenizer.word_index)


def test_prepare_split_encodes_pre_padded_and_dedups(tiny_root):
  config = _config('spam_lstm', tiny_root)
  corpus = input_pipeline.load_corpus(config)
  assert len(corpus) == 120  # The 5 repeats are gone.
  assert len(input_pipeline.load_corpus(_config('spam_lstm', tiny_root, dedup=False))) == 125
  split = input_pipeline.prepare_split(corpus, config)
  # Test: round(0.2 * 90) ham + round(0.2 * 30) spam; validation: 0.1 of the rest, 7 + 2.
  assert split.train_ids.shape == (87, 30) and split.val_ids.shape == (9, 30)
  assert split.test_ids.shape == (24, 30) and split.train_ids.dtype == np.int32
  assert (split.test_labels.sum(), split.val_labels.sum()) == (6, 2)
  parts = [set(split.index[p].tolist()) for p in input_pipeline.PARTS]
  assert sum(map(len, parts)) == len(set().union(*parts)) == 120 and not len(split.index['dropped'])
  # Messages are shorter than maxlen: padding on the left, the last word in the last column.
  assert np.all(split.train_ids[:, 0] == 0) and np.all(split.train_ids[:, -1] > 0)
  # The last word of every message is its unique word: known in train, unknown (dropped) in test.
  last_word = split.tokenizer.word_index
  assert all(split.train_ids[k, -1] == last_word[f'u{i}']
             for k, i in enumerate(split.index['train']))


def test_dedup_is_on_the_normalised_text_whatever_the_label(tmp_path):
  texts = ['WIN cash now!', 'win  cash, now', 'Win cash now', 'ok see you', 'ok, see: you'] + [
      f'filler {i}' for i in range(20)]
  labels = [1, 1, 0, 0, 0] + [0] * 20
  corpus = input_pipeline.load_corpus(_config('spam_lstm', _write_corpus(tmp_path, texts, labels)))
  assert corpus.texts[:2] == ['WIN cash now!', 'ok see you']  # First copies, in file order.
  assert corpus.rows[:3].tolist() == [1, 4, 6]  # Their lines in the CSV (the header is line 0).


def test_run_configs_give_each_seed_its_own_split():
  config = load_config('spam_rnn')
  config.num_seeds, config.seed, config.data.split_seed = 3, 10, 5
  runs = seeds.run_configs(config)
  assert [(r.seed, r.data.split_seed, r.num_seeds) for r in runs] == [(10, 5, 1), (11, 6, 1),
                                                                     (12, 7, 1)]
  config.data.split_per_seed = False
  assert [r.data.split_seed for r in seeds.run_configs(config)] == [5, 5, 5]
  assert config.seed == 10  # The caller's config is not changed.


def _leaks(corpus, split) -> dict[str, int]:
  """Held-out messages whose normalised text, token sequence or model input occurs in an
  earlier part (validation: in training; test: in training or validation)."""
  texts = lambda part: [corpus.texts[i] for i in split.index[part]]
  counts = {}
  for part, earlier in (('val', ['train']), ('test', ['train', 'val'])):
    seen = [t for p in earlier for t in texts(p)]
    norm = {normalised_text(t) for t in seen}
    seqs = {tuple(q) for q in split.tokenizer.texts_to_sequences(seen)}
    seen_ids = np.concatenate([getattr(split, f'{p}_ids') for p in earlier])
    counts[f'{part}_normalised'] = sum(normalised_text(t) in norm for t in texts(part))
    counts[f'{part}_tokens'] = sum(tuple(q) in seqs
                                   for q in split.tokenizer.texts_to_sequences(texts(part)))
    counts[f'{part}_inputs'] = int(input_pipeline.twins(getattr(split, f'{part}_ids'),
                                                        seen_ids).sum())
  return counts


def _templates_corpus(root: Path) -> Path:
  """Spam templates differing only in a code word, and case/punctuation copies of messages."""
  rng = np.random.default_rng(1)
  texts, labels = [], []
  for i in range(120):
    spam = i % 4 == 0
    words = rng.choice(_SPAM_WORDS[:5] if spam else _HAM_WORDS[:5], size=2)
    texts.append(f'{" ".join(words)} code{i}')  # code<i>: seen once, beyond num_words below.
    labels.append(int(spam))
  texts += [t.upper() + '!' for t in texts[:10]]
  return _write_corpus(root, texts, labels + labels[:10])


@pytest.mark.parametrize('data', ['real' if REAL_ROOT else 'tiny'])
def test_no_held_out_message_copies_training_as_text_or_model_input(data, tmp_path):
  """On the real corpus (split seeds 0-4) when AML2_DATA_DIR is set, else on spam templates."""
  if data == 'real':
    configs = [_config('spam_lstm', REAL_ROOT, limit=0, maxlen=150, split_seed=seed)
               for seed in range(5)]
  else:
    configs = [_config('spam_lstm', _templates_corpus(tmp_path), num_words=11)]
  for config in configs:
    corpus = input_pipeline.load_corpus(config)
    split = input_pipeline.prepare_split(corpus, config)
    assert not any(_leaks(corpus, split).values()), _leaks(corpus, split)
    assert len(split.index['dropped'])  # Model-input twins existed and were dropped.
    # Without dedup the same split leaks: the check above can fail.
    config.data.dedup = False
    corpus = input_pipeline.load_corpus(config)
    leaks = _leaks(corpus, input_pipeline.prepare_split(corpus, config))
    assert leaks['test_normalised'] and leaks['test_inputs'] > leaks['test_normalised']


@needs_real
def test_real_corpus_split_sizes():
  config = _config('spam_lstm', REAL_ROOT, limit=0, maxlen=150)
  corpus = input_pipeline.load_corpus(config)
  split = input_pipeline.prepare_split(corpus, config)
  sizes = lambda labels: (len(labels), int(labels.sum()))
  assert len(corpus) == 5131
  assert [sizes(split.train_labels), sizes(split.val_labels), sizes(split.test_labels)] == [
      (3695, 454), (404, 45), (1015, 116)]
  assert len(split.index['dropped']) == 17  # 11 test + 6 validation messages, at split seed 0.
  config.data.dedup = False
  corpus = input_pipeline.load_corpus(config)
  split = input_pipeline.prepare_split(corpus, config)
  assert [sizes(split.train_labels), sizes(split.val_labels), sizes(split.test_labels)] == [
      (4014, 538), (446, 60), (1114, 149)]


# ---------------------------------------------------------------- training


@functools.partial(jax.jit, static_argnums=0)
def _batch_loss(model, params, data, idx):
  logits = model.apply({'params': params}, data['ids'][idx])
  labels = data['labels'][idx].astype(jnp.float32)
  return jnp.mean(jnp.logaddexp(0.0, logits) - labels * logits)


# Loss on the first 32 synthetic training messages at init and after one step (seed 0). A change
# of initialiser, model, loss or optimizer moves these: update them only if you meant to. Updated
# when validation was carved out of training (the first 32 training messages changed).
_GOLDEN_LOSSES = {'spam_rnn': (0.680086, 0.649579), 'spam_lstm': (0.699700, 0.693266)}


@pytest.mark.parametrize('name', ['spam_rnn', 'spam_lstm'])
def test_one_training_step_lowers_the_loss_and_moves_every_parameter(name, tiny_root):
  config = _config(name, tiny_root)
  split = input_pipeline.prepare_split(input_pipeline.load_corpus(config), config)
  data = {'ids': jnp.asarray(split.train_ids), 'labels': jnp.asarray(split.train_labels)}
  model = make_model(config)
  step = jax.jit(spam_train.train_step)
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
  jitted = spam_train.logits_fn(model).jitted
  before = jitted._cache_size()  # pylint: disable=protected-access  (other tests share the cache)
  for seed in (0, 1):  # New params each epoch must not recompile (they are an argument).
    config.seed = seed
    metrics = spam_train.evaluate_split(model, spam_train.create_train_state(config).params,
                                        split.test_ids, split.test_labels)
  spam_train.logits_fn(model)(spam_train.create_train_state(config).params, split.train_ids[:3])
  assert jitted._cache_size() - before <= 1  # pylint: disable=protected-access
  assert metrics['confusion_matrix'][0][0] + metrics['confusion_matrix'][0][1] == 18


# A whole training run: the tests that use it are in the long tier.
@pytest.fixture(name='trained', scope='module')
def fixture_trained(tiny_root, tmp_path_factory) -> tuple[Path, dict]:
  """The LSTM smoke config trained for two seeds on the synthetic corpus (in this process)."""
  config = _config('spam_lstm', tiny_root)
  config.num_seeds = 2
  config.optim.learning_rate = 1e-2  # Learns the synthetic words in the smoke run's 12 steps.
  workdir = tmp_path_factory.mktemp('spam_run')
  return workdir, spam.train_and_evaluate(config, workdir)


@pytest.mark.long
def test_training_writes_results_for_every_seed_and_their_summary(trained):
  workdir, summary = trained
  assert json.loads((workdir / 'results.json').read_text()) == summary
  per_seed = [json.loads((workdir / f'seed_{s}' / 'results.json').read_text()) for s in (0, 1)]
  for results in per_seed:
    assert set(_RESULT_FIELDS) <= set(results)
    assert results['num_params'] == 260_657
    assert (results['num_train'], results['num_val'], results['num_test']) == (87, 9, 24)
    assert np.sum(results['test_confusion_matrix']) == 24
    assert (results['epoch_used'], results['epoch_selection']) == (2, 'last epoch')
    assert results['split_protocol'].startswith('deduplicated')
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
    # Per-epoch metrics are the validation part's, never the test part's.
    assert epochs[-1]['val_loss'] == pytest.approx(per_seed[s]['val_loss'])
    assert not any(k.startswith('test_') for e in epochs for k in e)


@pytest.mark.long
def test_split_json_gives_each_part_as_lines_of_the_data_file(trained, tiny_root):
  workdir, _ = trained
  split = json.loads((workdir / 'seed_1' / 'split.json').read_text())
  assert split['data_file'] == 'spam.csv' and split['dropped_as_token_twins'] == []
  parts = [split[p] for p in ('train', 'val', 'test')]
  assert [len(p) for p in parts] == [87, 9, 24]
  # The 125 data lines: 120 messages kept, the 5 exact repeats (the last 5 lines) dropped.
  assert sorted(sum(parts, [])) == list(range(1, 121))
  lines = (tiny_root / 'sms_spam' / 'spam.csv').read_text(encoding='utf-8').splitlines()
  texts, labels = _synthetic_corpus()
  for line in split['test']:  # Checked against the file alone, without the project's reader.
    label, text = next(csv.reader([lines[line]]))
    assert (text, label) == (texts[line - 1], 'spam' if labels[line - 1] else 'ham')
  # The split seed differs per seed: another split.
  assert json.loads((workdir / 'seed_0' / 'split.json').read_text())['test'] != split['test']


def test_keep_best_val_epoch_restores_the_checkpoint_of_lowest_validation_loss(tmp_path):
  config = load_config('spam_lstm', 'smoke')
  run_dir = tmp_path / 'seed_0'
  run_dir.mkdir()
  tokenizer = Tokenizer.fit(['a b c'], config.data.num_words)
  tokenizer.save(run_dir / spam_train.TOKENIZER_FILE)
  meta = spam_train.checkpoint_meta(config, input_pipeline.vocab_digest(tokenizer))
  ckpt = Checkpointer(run_dir / 'checkpoints', best_metric=spam_train.BEST_METRIC)
  params = {}
  for step, val_loss in ((10, 0.2), (20, 0.5)):  # Validation loss rises in the second epoch.
    config.seed = step  # Different params for each checkpoint.
    state = spam_train.create_train_state(config)
    params[step] = state.params
    ckpt.save(step, {'state': state}, meta, {'val_loss': val_loss})
  ckpt.close()
  for keep_best, expected in ((True, 10), (False, 20)):
    config.keep_best_val_epoch = keep_best
    restored, _, _, step = spam_train.restore_for_eval(config, run_dir, tmp_path)
    assert step == expected
    jax.tree.map(np.testing.assert_array_equal, restored, params[expected])


@pytest.mark.long
def test_eval_can_use_the_epoch_of_lowest_validation_loss(trained, tiny_root, tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(trained[0], workdir)
  config = _config('spam_lstm', tiny_root)
  config.keep_best_val_epoch = True
  results = spam.evaluate(config, workdir)['per_seed']['0']
  epochs = [json.loads(line) for line in (workdir / 'seed_0' / 'metrics.jsonl').read_text()
            .splitlines()]
  best = min(epochs, key=lambda e: e['val_loss'])
  assert results['epoch_used'] == best['epoch']
  assert results['epoch_selection'] == 'lowest validation loss'
  assert results['val_loss'] == pytest.approx(best['val_loss'], rel=1e-6)


@pytest.mark.long
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


@pytest.mark.long
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


@pytest.mark.long
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


@pytest.mark.long
def test_resuming_with_other_data_is_refused_and_keeps_the_vocabulary(trained, tiny_root,
                                                                      tmp_path):
  workdir = tmp_path / 'copy'
  shutil.copytree(trained[0], workdir)
  vocab = (workdir / 'seed_0' / spam_train.TOKENIZER_FILE).read_bytes()
  with pytest.raises(UserError, match='different data'):
    spam.train_and_evaluate(_config('spam_lstm', tiny_root, dedup=False), workdir)
  assert (workdir / 'seed_0' / spam_train.TOKENIZER_FILE).read_bytes() == vocab


def test_a_cosine_run_resumed_with_another_length_is_refused(tmp_path):
  def saved_meta():  # As the checkpoint holds it: JSON.
    return json.loads(json.dumps(spam_train.checkpoint_meta(config, 'vocab digest')))

  config = load_config('spam_rnn')
  saved = saved_meta()
  config.num_epochs += 10  # A constant rate may be trained on for longer...
  check_compatible(saved, spam_train.checkpoint_meta(config, 'vocab digest'), tmp_path)
  config.num_epochs -= 11  # ...not for shorter.
  with pytest.raises(UserError, match=r'different num_epochs \(10 there, 9 now\); .*may only grow'):
    check_compatible(saved, spam_train.checkpoint_meta(config, 'vocab digest'), tmp_path)
  config.num_epochs = 20
  config.optim.schedule = 'cosine'
  saved = saved_meta()
  config.num_epochs += 10
  with pytest.raises(UserError, match=r'different optim\.schedule_epochs \(20 there, 30 now\)'):
    check_compatible(saved, spam_train.checkpoint_meta(config, 'vocab digest'), tmp_path)
  # Using the trained model checks neither: they shaped training, not the model.
  check_compatible(saved, spam_train.checkpoint_meta(config, 'vocab digest'), tmp_path,
                   resume=False)


@pytest.mark.long
def test_a_changed_optimizer_setting_on_resume_is_one_line_and_eval_still_restores(
    trained, tiny_root, tmp_path):
  """The resume rule: an optimizer setting may not change (the trained run used 1e-2)."""
  workdir = Path(shutil.copytree(trained[0], tmp_path / 'copy'))
  before = sorted(p.name for p in (workdir / 'seed_0' / 'checkpoints').iterdir())
  done = launch('--config=configs/spam_lstm.py:smoke', f'--config.data.dir={tiny_root}',
                '--config.num_seeds=2', '--config.optim.learning_rate=0.02', f'--workdir={workdir}')
  assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr[-2000:]
  assert done.stderr.strip().splitlines()[-1] == (
      f'error: the checkpoint in {workdir / "seed_0"} was made with a different '
      'optim.learning_rate (0.01 there, 0.02 now); use another --workdir, or the config that '
      'made it.')
  assert sorted(p.name for p in (workdir / 'seed_0' / 'checkpoints').iterdir()) == before
  config = _config('spam_lstm', tiny_root)
  config.optim.learning_rate, config.num_epochs = 0.02, 1  # Not checked when only used.
  assert spam_train.restore_for_eval(config, workdir / 'seed_0', workdir)[3] > 0


@pytest.mark.long
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


def test_weighted_averages_are_classification_reports_weighted_avg():
  rng = np.random.default_rng(0)
  for num in (7, 40, 300):
    labels = (rng.random(num) < 0.15).astype(int)
    scores = np.clip(labels * 0.4 + rng.normal(0.3, 0.2, num), 0, 1)
    m = binary_metrics(labels, scores)
    report = sk_metrics.classification_report(labels, scores > 0.5, output_dict=True,
                                              labels=[0, 1], zero_division=0)['weighted avg']
    assert (m['precision_weighted'], m['recall_weighted'], m['f1_weighted']) == pytest.approx(
        (report['precision'], report['recall'], report['f1-score']))
  # Ham dominates the weights: 10 ham right, 1 ham flagged, 1 spam caught. Spam precision is 1/2;
  # the weighted average (11/12 * 10/10 + 1/12 * 1/2 = 0.958) is what a report's last row shows.
  m = binary_metrics(np.array([0] * 11 + [1]), np.array([0.1] * 10 + [0.9, 0.9]))
  assert m['precision'] == 0.5
  assert m['precision_weighted'] == pytest.approx(11 / 12 + 1 / 24)


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
    ('data.val_fraction', 0.0, 'val_fraction'),
    ('num_seeds', 0, 'num_seeds'),
    ('optim.schedule', 'linear', 'use "constant"'),
])
def test_check_config_refuses_bad_values(field, value, message):
  config = load_config('spam_rnn')
  group, _, name = field.rpartition('.')
  (config[group] if group else config)[name] = value
  with pytest.raises(UserError, match=message):
    spam.check_config(config)


def test_cosine_schedule_decays_the_rate_to_zero_over_the_whole_run():
  config = load_config('spam_rnn')
  config.optim.schedule = 'cosine'
  params = {'w': jnp.ones(3)}
  tx = spam_train.make_optimizer(config, total_steps=4)
  opt_state = tx.init(params)
  steps = []
  for _ in range(5):  # Adam's first steps move each weight by about the rate: the rate itself.
    updates, opt_state = tx.update({'w': jnp.ones(3)}, opt_state, params)
    steps.append(float(-updates['w'][0]))
  rate = config.optim.learning_rate
  np.testing.assert_allclose(steps, [rate, rate * 0.85355, rate * 0.5, rate * 0.14645, 0.0],
                             rtol=1e-3, atol=1e-9)
  config.optim.schedule = 'constant'
  constant = spam_train.make_optimizer(config, total_steps=4)
  updates, _ = constant.update({'w': jnp.ones(3)}, constant.init(params), params)
  np.testing.assert_allclose(-updates['w'], rate, rtol=1e-3)


# ---------------------------------------------------------------- k-fold cross-validation


def _cv_config(root: Path, folds: int = 5, **data):
  config = _config('spam_rnn', root, cv_folds=folds, **data)
  config.num_seeds = folds
  return config


def _fold_splits(config) -> tuple[object, list]:
  corpus = input_pipeline.load_corpus(config)
  return corpus, [input_pipeline.prepare_split(corpus, run) for run in seeds.run_configs(config)]


def test_cv_folds_partition_the_non_test_part_stratified_around_one_test_part(tiny_root):
  config = _cv_config(tiny_root)
  runs = seeds.run_configs(config)
  assert [(r.seed, r.data.split_seed, r.data.cv_fold) for r in runs] == [
      (k, 0, k) for k in range(5)]  # One split for all: split_per_seed does not apply.
  corpus, splits = _fold_splits(config)
  test = splits[0].index['test']
  assert all(np.array_equal(s.index['test'], test) for s in splits)
  non_test = set(range(len(corpus))) - set(test.tolist())
  vals = [set(s.index['val'].tolist()) for s in splits]
  assert sum(map(len, vals)) == len(set().union(*vals)) and set().union(*vals) == non_test
  for label in (0, 1):  # Stratified: a class's count in a fold varies by at most one message.
    counts = [int((s.val_labels == label).sum()) for s in splits]
    assert max(counts) - min(counts) <= 1 and sum(counts) == sum(corpus.labels[list(non_test)]
                                                                 == label)
  # 96 non-test messages, folds of 20, 19, 19, 19, 19: every model trains on 76 (one program),
  # the other folds but for one message where they hold 77.
  assert {len(s.train_labels) for s in splits} == {76}
  assert sorted(map(len, vals)) == [19, 19, 19, 19, 20]
  for s, val in zip(splits, vals):
    assert len(non_test - val - set(s.index['train'].tolist())) == (len(val) == 19)
  # The default (cv_folds 0) is the one validation part of 10%.
  assert len(input_pipeline.prepare_split(corpus, _config('spam_rnn', tiny_root)).val_labels) == 9


def _fold_vocabulary_corpus(root: Path) -> Path:
  """Messages of common words, and triples `<m>`, `<m> b<i>`, `<words> b<i>`: where the last
  validates, `b<i>` is out of that fold's vocabulary and `<m> b<i>` is `<m>` to its model."""
  rng = np.random.default_rng(0)
  common = lambda size: ' '.join(rng.choice(_SPAM_WORDS + _HAM_WORDS, size=size))
  texts = [common(4) for _ in range(80)]
  for i in range(40):
    message = common(3)
    texts += [message, f'{message} b{i}', f'{common(2)} b{i}']
  return _write_corpus(root, texts, [int(k % 4 == 0) for k in range(len(texts))])


def test_cv_test_part_is_shared_and_holds_no_twin_under_any_folds_vocabulary(tmp_path):
  config = _cv_config(_fold_vocabulary_corpus(tmp_path))
  corpus, splits = _fold_splits(config)
  test = splits[0].index['test']
  assert all(np.array_equal(s.index['test'], test) for s in splits)
  for split in splits:
    assert not any(_leaks(corpus, split).values()), _leaks(corpus, split)
  # Each fold alone would drop other test messages: one shared test part needs all folds' twins.
  config.data.dedup = False
  alone = [input_pipeline.twins(s.test_ids, np.concatenate([s.train_ids, s.val_ids]))
           for s in _fold_splits(config)[1]]
  assert len({tuple(a) for a in alone}) > 1


@needs_real
def test_real_corpus_cv_folds_share_one_test_part_without_twins():
  config = _cv_config(REAL_ROOT, limit=0, maxlen=150)
  corpus, splits = _fold_splits(config)
  assert {len(s.train_labels) for s in splits} == {3284}  # 4,105 non-test messages, 821 a fold.
  assert {len(s.test_labels) for s in splits} == {1007}
  for split in splits:
    assert not any(_leaks(corpus, split).values())
  config.data.update(dedup=False, tokenizer_fit='all')
  _, splits = _fold_splits(config)
  assert [(len(s.train_labels), len(s.val_labels), len(s.test_labels)) for s in splits] == [
      (3568, 892, 1114)] * 5


@pytest.mark.parametrize('folds, num_seeds, fold, message', [
    (1, 1, 0, 'cv_folds is 1: use 0'),
    (-2, 1, 0, 'cv_folds is -2: use 0'),
    (5, 6, 0, 'cv_fold is 0 with num_seeds 6'),
    (5, 2, 4, 'cv_fold is 4 with num_seeds 2'),
    (5, 1, -1, 'cv_fold is -1'),
])
def test_bad_cv_values_are_refused_in_one_line(folds, num_seeds, fold, message):
  config = load_config('spam_rnn', 'smoke')
  config.data.cv_folds, config.num_seeds, config.data.cv_fold = folds, num_seeds, fold
  with pytest.raises(UserError, match=message) as refused:
    spam.check_config(config)
  assert '\n' not in str(refused.value)


def test_more_folds_than_messages_of_a_class_are_refused(tiny_root):
  config = _cv_config(tiny_root, folds=25)  # 24 spam messages outside the test part.
  spam.check_config(config)
  with pytest.raises(UserError, match='cv_folds is 25, but the non-test part .* holds 24 '
                     'messages of a class; use fewer folds') as refused:
    _fold_splits(config)
  assert '\n' not in str(refused.value)
  assert len(_fold_splits(_cv_config(tiny_root, folds=24))[1]) == 24


def test_cv_summary_holds_the_mean_validation_figures_only_with_folds():
  config = load_config('spam_rnn')
  runs = {s: {'num_params': 1, 'split_seed': 0, 'test_accuracy': 0.9, 'val_accuracy': acc,
              'val_loss': loss, 'test_confusion_matrix': [[1, 0], [0, 1]]}
          for s, acc, loss in ((0, 0.96, 0.2), (1, 0.98, 0.1))}
  assert 'val_accuracy' not in seeds.summarize(config, runs)
  config.data.cv_folds = 2
  summary = seeds.summarize(config, runs)
  assert (summary['val_accuracy'], summary['val_loss']) == pytest.approx((0.97, 0.15))
  assert summary['val_accuracy_std'] == pytest.approx(np.sqrt(2e-4))


def test_a_cross_validated_candidate_is_picked_over_runs_validated_on_one_part():
  from aml2_jax.report import tables  # pylint: disable=g-import-not-at-top
  from aml2_jax.report.runs import Results, Run  # pylint: disable=g-import-not-at-top

  def run(key, val_accuracy, cv=False, roles=('choice',)):
    per_seed = {str(k): {'val_accuracy': val_accuracy, 'val_loss': 0.05} for k in range(5)}
    cv_fields = {'val_accuracy': val_accuracy, 'val_loss': 0.05} if cv else {}
    return Run(key, Path('.'), {'roles': list(roles), 'baseline': 'spam/rnn_study'},
               {'per_seed': per_seed, **cv_fields}, {})

  runs = [run('spam/rnn_study', 0.995, roles=('baseline',)),
          run('spam/choices/once', 0.999), run('spam/choices/cv_a', 0.985, cv=True),
          run('spam/choices/cv_b', 0.990, cv=True)]
  results = Results(Path('.'), {r.key: r for r in runs}, {})
  assert tables.contest(results, runs[0])[1].key == 'spam/choices/cv_b'
  without_cv = Results(Path('.'), {r.key: r for r in runs[:2]}, {})
  assert tables.contest(without_cv, runs[0])[1].key == 'spam/choices/once'


@pytest.mark.long
def test_a_run_of_every_fold_scores_its_fold_models_as_one_ensemble(tiny_root, tmp_path):
  config = _cv_config(tiny_root, folds=2)
  summary = spam.train_and_evaluate(config, tmp_path)
  corpus, splits = _fold_splits(config)
  probs = []
  for run, split in zip(seeds.run_configs(config), splits):
    params = spam_train.restore_for_eval(run, seeds.seed_dir(tmp_path, run.seed), tmp_path)[0]
    (logits,) = spam_train.logits_fn(make_model(run))(params, split.test_ids)
    probs.append(1 / (1 + np.exp(-np.asarray(logits, np.float64))))
  mean = np.mean(probs, axis=0)
  expected = np.mean((mean > 0.5) == splits[0].test_labels)
  assert summary['ensemble_test_accuracy'] == pytest.approx(expected)
  assert np.sum(summary['ensemble_test_confusion_matrix']) == len(splits[0].test_labels)
  # Not every fold trained: no ensemble.
  config.num_seeds = 1
  assert 'ensemble_test_accuracy' not in spam.evaluate(config, tmp_path)
