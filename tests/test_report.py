"""The docs' tables and figures come from `results/` (`python -m aml2_jax.report`)."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aml2_jax.report import __main__ as report_main
from aml2_jax.report import choices, figures, publish, sources, tables
from conftest import REPO

MACHINE = {'cpu': 'AMD EPYC 7B13', 'cores': 2, 'memory_gib': 23.5, 'os': 'Linux',
           'backend': 'cpu', 'device_kind': 'cpu', 'num_devices': 1, 'num_processes': 1}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, str) else value)


def _record(command: str, wall_s: float = 100.0) -> dict:
  return {'invocations': [{
      'command': command, 'mode': 'train', 'git': {'commit': 'abc1234def' + '0' * 30,
                                                   'dirty': False},
      'started': '2026-12-01T09:00:00+00:00', 'finished': '2026-12-01T09:10:00+00:00',
      'wall_s': wall_s, 'exit': 'ok', 'machine': MACHINE, 'versions': {'jax': '0.10.2'}}]}


def _spam_results(accuracy: float) -> dict:
  seed = {'num_train': 3695, 'num_val': 404, 'num_test': 1015, 'test_confusion_matrix':
          [[896, 3], [7, 109]], 'num_held_out_token_twins_dropped': 17}
  metrics = {f'test_{m}': accuracy for m in ('accuracy', 'precision', 'precision_weighted',
                                             'recall', 'f1', 'mcc', 'ham_fpr', 'roc_auc',
                                             'pr_auc')}
  return {**metrics, 'test_accuracy_std': 0.0025, 'num_seeds': 5, 'train_wall_s': 15.84,
          'train_wall_s_std': 3.5, 'per_seed': {str(k): seed for k in range(5)}}


def _cgan_results(accuracy: float) -> dict:
  per_class = {c: accuracy for c in figures.CLASSES}
  return {**{f'{part}_{k}': v for part in ('val', 'test') for k, v in (
      ('conditional_accuracy', accuracy), ('fid', 30.84), ('class_entropy', 2.294),
      ('cas_accuracy', 0.8144), ('per_class_accuracy', per_class))},
          'classifier_test_accuracy': 0.9207, 'fid_train_vs_test': 0.33,
          'seconds': {'gan_training': 434.0, 'judge_training': 480.0, 'evaluation': 300.0}}


def fake_tree(root: Path) -> Path:
  """A results tree with every run the tables know, each with its run record."""
  res = root / 'results'
  for key in sources.SPAM_RUNS:
    cell, protocol = key.split('/')[1].split('_')
    flags = ' --noconfig.data.dedup --config.data.tokenizer_fit=all' if protocol == 'study' else ''
    _write(res / key / 'results.json', _spam_results(0.9880))
    _write(res / key / 'run.json', _record(f'python launch.py --config=configs/spam_{cell}.py '
                                           f'--config.num_seeds=5{flags} --workdir=runs/{key}'))
    for k in range(2):
      _write(res / key / f'seed_{k}' / 'metrics.jsonl', ''.join(
          json.dumps({'epoch': e, 'step': e, 'train_loss': 1 / e, 'val_loss': 1 / e,
                      'val_accuracy': 1 - 1 / (e + 1)}) + '\n' for e in (1, 2, 3)))
  for key in sources.TEXTGEN_RUNS:
    _write(res / key / 'results.json', {'val_bpc': 2.1234, 'test_bpc': 2.0, 'epochs': 30,
                                        'best_epoch': 29, 'steps_per_epoch': 3187,
                                        'test_loss': 1.4, 'wall_s': 7200.0})
    record = _record(f'python launch.py --config=configs/textgen_'
                     f'{key.split("/")[1].split("_")[0]}.py --workdir=runs/{key}', 7300.0)
    record['invocations'] *= 3  # Stopped and resumed twice: its time is the three together.
    _write(res / key / 'run.json', record)
    _write(res / key / 'metrics.jsonl', ''.join(json.dumps({'epoch': e, 'val_bpc': 3 - e / 10})
                                                + '\n' for e in (1, 2, 3)))
    _write(res / key / 'samples.txt', 'epoch 30, temperature 0.5:\n|Hello there\n')
  _write(res / sources.TEXTGEN_BASELINES / 'results.json', {
      'uniform': {'val_bpc': 6.87, 'test_bpc': 6.87}, 'unigram': {'val_bpc': 4.85,
                                                                 'test_bpc': 4.91},
      'kneser_ney_5': {'val_bpc': 2.493, 'test_bpc': 2.383},
      'add_k_5': {'val_bpc': 3.14, 'test_bpc': 3.0, 'k': 0.03}, 'order': 5, 'vocab_size': 117,
      'val_windows': 23516, 'test_windows': 22340, 'split': {'split_seed': 0}})
  _write(res / sources.TEXTGEN_BASELINES / 'run.json',
         _record('python -m aml2_jax.textgen.baselines --out=results/textgen/baselines/'
                 'results.json', 8.0))
  for key in sources.CGAN_RUNS:
    _write(res / key / 'results.json', _cgan_results(0.8909 if key.endswith('default')
                                                     else 0.7714))
    _write(res / key / 'run.json', _record('python launch.py --config=configs/cgan.py', 1200.0))
    _write(res / key / 'metrics.jsonl', ''.join(json.dumps({'epoch': e, 'train_d_loss': 0.5,
                                                            'train_g_loss': 1.5}) + '\n'
                                                for e in (1, 2)))
  _write(res / sources.JUDGE / 'results.json', {'num_params': 421642, 'test_accuracy': 0.9207})
  _write(res / sources.JUDGE / 'metrics.jsonl', '{"epoch": 1, "train_loss": 0.5}\n')
  _write(res / sources.JUDGE / 'run.json', _record('python launch.py '
                                                   '--config=configs/fmnist_classifier.py'))
  _write(res / sources.MAIN_JOB / 'run.json', _record('python launch.py --config=configs/cgan.py',
                                                      1900.0))
  _write(res / sources.MAIN_JOB / 'results.json', _cgan_results(0.8909))
  shutil.copytree(REPO / 'results' / 'bench', res / 'bench')
  return root


def _docs_copy(root: Path) -> Path:
  """README.md and docs/*.md of the repository, under `root`."""
  shutil.copy(REPO / 'README.md', root / 'README.md')
  (root / 'docs').mkdir(exist_ok=True)
  for page in (REPO / 'docs').glob('*.md'):
    shutil.copy(page, root / 'docs' / page.name)
  return root


def test_check_passes_on_the_repo_fast_and_without_jax():
  code = ('import sys; from aml2_jax.report import __main__ as m; rc = m.main(["--check"]); '
          'assert "jax" not in sys.modules, "the check imported JAX"; sys.exit(rc)')
  start = time.perf_counter()
  done = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 0, ('README.md or docs/ differ from results/; run `python -m '
                                f'aml2_jax.report` and commit the result:\n{done.stderr}')
  assert time.perf_counter() - start < 5


def test_a_table_edited_by_hand_is_caught_and_nothing_is_written(tmp_path, capsys):
  root = _docs_copy(tmp_path)
  shutil.copytree(REPO / 'results', root / 'results')
  readme = root / 'README.md'
  text = readme.read_text()
  start = text.index('<!-- report:spam_headline -->')
  # A figure raised by one point: the first "mean ±" of the table.
  edited = text[:start] + re.sub(r'(\d+\.\d+) ±', lambda m: f'{float(m[1]) + 1:.2f} ±',
                                 text[start:], count=1)
  assert edited != text
  readme.write_text(edited)
  assert report_main.main(['--check', '--root', str(root)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ['README.md: table report:spam_headline differs from results/; run: '
                 'python -m aml2_jax.report']
  assert readme.read_text() == edited  # --check writes nothing.
  assert not (root / 'docs' / 'figures').exists()


def test_an_unknown_marker_is_reported(tmp_path, capsys):
  (tmp_path / 'README.md').write_text('<!-- report:nonesuch -->\n<!-- /report:nonesuch -->\n')
  assert report_main.main(['--check', '--root', str(tmp_path)]) == 1
  assert 'report:nonesuch names no table' in capsys.readouterr().err


def test_tables_render_from_a_temporary_results_tree(tmp_path):
  root = tmp_path
  res = root / 'results' / 'spam' / 'rnn_dedup'
  _write(res / 'results.json', _spam_results(0.9880))
  _write(res / 'run.json', _record('python launch.py --config=configs/spam_rnn.py'))
  _write(root / 'results' / 'cgan' / 'default' / 'results.json', _cgan_results(0.8909))
  spam = tables.RENDERERS['spam_dedup'](root, Path('docs'))
  rows = {line.split(' | ')[0]: line for line in spam.splitlines() if line.startswith('| **')}
  assert rows['| **RNN**'].startswith('| **RNN** | 98.80 ± 0.25 | 98.80 | ')
  assert rows['| **LSTM**'] == '| **LSTM** | not run yet | – | – | – | – | – | – | – | – |'
  assert spam.endswith('Measured on AMD EPYC 7B13, 2 cores (cpu), 2026-12-01, commit abc1234: '
                       '`python launch.py --config=configs/spam_rnn.py`.')
  cgan = tables.RENDERERS['cgan_headline'](root, Path('.'))
  assert '| 89.09 | 30.84 | 2.294 | 81.44 | 434 s (7.2 min) |' in cgan
  assert 'met (89.1%)' in cgan
  assert '`results/cgan/default`: run record missing.' in cgan


def test_every_marker_renders_the_same_twice_and_the_readme_stays_short(tmp_path):
  root = _docs_copy(fake_tree(tmp_path))
  assert report_main.main(['--root', str(root)]) == 0
  assert report_main.main(['--check', '--root', str(root)]) == 0
  readme = (root / 'README.md').read_text()
  assert 'not run yet' not in readme
  assert '| test bits/char: 2.000 | 6.1 h, resumed 2× |' in readme
  assert len(readme) < 12_000, 'the front page grew past 12,000 characters once every run exists'


def test_figures_are_drawn_into_a_temp_dir_and_linked(tmp_path):
  root = fake_tree(tmp_path)
  written = {p.name for p in figures.draw_all(root, tmp_path / 'out')}
  assert written == {'spam_curves.png', 'textgen_val_bpc.png', 'cgan_curves.png',
                     'cgan_per_class.png', 'judge_curves.png', 'bench_samples_per_s.png'}
  for name in written:
    assert (tmp_path / 'out' / name).read_bytes()[:4] == b'\x89PNG'
  links = tables.RENDERERS['textgen_figures'](root, Path('docs'))
  assert links == ('![Text generator: validation bits/char per epoch]'
                   '(figures/textgen_val_bpc.png)')


def test_publish_copies_the_small_files_and_refuses_an_unfinished_run(tmp_path):
  run = tmp_path / 'run'
  _write(run / 'config.json', {})
  with pytest.raises(publish.PublishError, match='has no results.json'):
    publish.publish(run, tmp_path / 'dest')
  _write(run / 'results.json', {'test_bpc': 2.0})
  _write(run / 'samples.txt', 'epoch 1:\n|a\n\nepoch 2:\n|b\n\n')
  _write(run / 'seed_0' / 'split.json', 'x' * (publish.MAX_BYTES + 1))
  _write(run / 'seed_0' / 'metrics.jsonl', '{"epoch": 1}\n')
  _write(run / 'checkpoints' / '1' / 'params', 'big')
  lines = publish.publish(run, tmp_path / 'dest')
  dest = tmp_path / 'dest'
  assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob('*') if p.is_file()) == [
      'config.json', 'results.json', 'samples.txt', 'seed_0/metrics.jsonl']
  assert (dest / 'samples.txt').read_text() == 'epoch 2:\n|b\n'
  assert any(line.startswith('skipped') and 'split.json' in line for line in lines)


def test_publish_can_leave_out_the_splits_of_a_candidate_run(tmp_path):
  run, dest = tmp_path / 'run', tmp_path / 'results' / 'spam' / 'choices' / 'rnn_study_x'
  _write(run / 'results.json', {'num_seeds': 1})
  _write(run / 'seed_0' / 'split.json', {'train': [0], 'val': [1], 'test': [2]})
  _write(run / 'seed_0' / 'results.json', {})
  assert report_main.main(['publish', '--no-splits', str(run), str(dest)]) == 0
  assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob('*') if p.is_file()) == [
      'results.json', 'seed_0/results.json']


def _spam_config(learning_rate: float, **fields) -> dict:
  return {'num_epochs': 10, 'num_seeds': 5, 'optim': {'learning_rate': learning_rate},
          'data': {'dir': '', 'dedup': False, 'tokenizer_fit': 'all'}, **fields}


def _spam_candidate(root: Path, name: str, val_accuracy: float, val_loss: float,
                    test_accuracy: float, config: dict) -> None:
  results = _spam_results(test_accuracy)
  results['per_seed'] = {str(k): {**seed, 'val_accuracy': val_accuracy, 'val_loss': val_loss}
                         for k, seed in results['per_seed'].items()}
  folder = root / 'results' / 'spam' / 'choices' / name
  _write(folder / 'results.json', results)
  _write(folder / 'config.json', config)
  _write(folder / 'run.json', _record(f'python launch.py --workdir=runs/spam_sweep/{name}'))


def test_choices_pick_on_validation_and_show_only_the_changed_training_fields(tmp_path):
  root = fake_tree(tmp_path)
  _write(root / 'results' / 'spam' / 'rnn_study' / 'config.json', _spam_config(1e-3))
  # The best test accuracy belongs to the run with the worse validation accuracy: not picked.
  _spam_candidate(root, 'rnn_study_lr5e-4', 0.995, 0.05, 0.980,
                  _spam_config(5e-4, num_seeds=1, devices={'kind': 'cpu'}))
  _spam_candidate(root, 'rnn_study_e20', 0.990, 0.04, 0.999, _spam_config(1e-3, num_epochs=20))
  rnn_study = choices.CHOICES['spam'][0]
  assert choices.picked(root, rnn_study).key == 'spam/choices/rnn_study_lr5e-4'
  text = choices.RENDERERS['spam_choices'](root, Path('docs'))
  picked_row = next(line for line in text.splitlines() if '**picked**' in line)
  # Placement fields (num_seeds, devices) are not training choices.
  assert '| `optim.learning_rate=0.0005` | 99.50 |' in picked_row
  assert '`num_epochs=20`' in text and '98.00' not in text  # Validation only: no test figure.
  targets = choices.RENDERERS['spam_targets'](root, Path('docs'))
  row = next(line for line in targets.splitlines()
             if "RNN, study's protocol: test accuracy" in line)
  assert 'results/spam/choices/rnn_study_lr5e-4' in row and 'missed by 1.00' in row


@pytest.mark.parametrize('value, goal, at_least, verdict', [
    (0.9879984, 0.988, True, 'missed by 0.0002'),  # Never "missed by 0.00".
    (0.99, 0.99, True, 'met'), (2.49, 2.5, False, 'met'), (2.826, 2.5, False, 'missed by 0.33'),
])
def test_a_target_verdict_says_met_or_by_how_much_it_was_missed(value, goal, at_least, verdict):
  target = choices.Target('spam', 'spam/rnn_dedup', 'x', 'test_accuracy', goal, at_least,
                          100.0 if goal < 1 else 1.0)
  assert choices._verdict(target, value) == verdict


def test_a_resumed_candidate_says_its_training_time_covers_only_the_resumed_steps(tmp_path):
  root = fake_tree(tmp_path)
  _write(root / 'results' / 'cgan' / 'default' / 'config.json', {'num_epochs': 30})
  candidate = root / 'results' / 'cgan' / 'choices' / 'default_e60'
  results = _cgan_results(0.95)
  results.update(val_fid=5.0, resumed_from_step=28110)
  _write(candidate / 'results.json', results)
  _write(candidate / 'config.json', {'num_epochs': 60})
  _write(candidate / 'run.json', _record('python launch.py --config=configs/cgan.py'))
  headline = tables.RENDERERS['cgan_headline'](root, Path('.'))
  row = next(line for line in headline.splitlines() if 'tuned on validation' in line)
  assert '`num_epochs=60`' in row and row.endswith('434 s (7.2 min), from step 28,110 on |')
