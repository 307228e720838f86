"""The docs' tables and figures come from `results/` (`python -m aml2_jax.report`)."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aml2_jax import jsonio
from aml2_jax.errors import UserError
from aml2_jax.report import __main__ as report_main
from aml2_jax.report import figures, publish, tables
from aml2_jax.report.runs import Results, Run
from conftest import REPO

MACHINE = {'cpu': 'AMD EPYC 7B13', 'cores': 2, 'memory_gib': 23.5, 'os': 'Linux',
           'backend': 'cpu', 'device_kind': 'cpu', 'num_devices': 1, 'num_processes': 1}
STUDY_TARGET = {'what': "RNN, study's protocol: test accuracy (%)", 'run': 'spam/rnn_study',
                'metric': 'test_accuracy', 'goal': 0.99, 'at_least': True, 'scale': 100.0,
                'digits': 2}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, str) else value)


def _record(command: str, wall_s: float = 100.0, times: int = 1) -> dict:
  return {'invocations': [{
      'command': command, 'mode': 'train', 'git': {'commit': 'abc1234def' + '0' * 30,
                                                   'dirty': False},
      'started': '2026-12-01T09:00:00+00:00', 'wall_s': wall_s, 'exit': 'ok',
      'machine': MACHINE}] * times}


def _run(root: Path, key: str, report: dict, results: dict, record: bool = True) -> Path:
  """A published run: results/<key>/ with its report.json, results.json and run.json."""
  path = root / 'results' / key
  _write(path / 'report.json', report)
  _write(path / 'results.json', results)
  if record:
    _write(path / 'run.json', _record(f'python launch.py --workdir=runs/{key}'))
  return path


def _spam_results(accuracy: float, val_accuracy: float = 0.99, val_loss: float = 0.05) -> dict:
  seed = {'num_train': 3695, 'num_val': 404, 'num_test': 1015, 'test_confusion_matrix':
          [[896, 3], [7, 109]], 'val_accuracy': val_accuracy, 'val_loss': val_loss}
  metrics = {f'test_{m}': accuracy for m in ('accuracy', 'precision', 'precision_weighted',
                                             'recall', 'f1', 'mcc', 'ham_fpr', 'roc_auc',
                                             'pr_auc')}
  return {**metrics, 'test_accuracy_std': 0.0025, 'num_seeds': 5, 'dedup': True,
          'train_wall_s': 15.84, 'per_seed': {str(k): seed for k in range(5)}}


def _cgan_results(accuracy: float, **more) -> dict:
  return {**{f'{part}_{k}': v for part in ('val', 'test') for k, v in (
      ('conditional_accuracy', accuracy), ('fid', 30.84), ('class_entropy', 2.294),
      ('cas_accuracy', 0.8144))}, 'seconds': {'gan_training': 434.0}, **more}


def _copy_of_the_repo(root: Path) -> Path:
  """README.md, docs/*.md and results/ of the repository, under `root`."""
  shutil.copy(REPO / 'README.md', root / 'README.md')
  (root / 'docs').mkdir()
  for page in (REPO / 'docs').glob('*.md'):
    shutil.copy(page, root / 'docs' / page.name)
  shutil.copytree(REPO / 'results', root / 'results')
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
  root = _copy_of_the_repo(tmp_path)
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


def test_a_relabelled_run_makes_its_tables_stale(tmp_path, capsys):
  root = _copy_of_the_repo(tmp_path)
  about = root / 'results' / 'spam' / 'lstm_dedup' / 'report.json'
  _write(about, {**json.loads(about.read_text()), 'label': 'GRU'})
  assert report_main.main(['--check', '--root', str(root)]) == 1
  assert 'README.md: table report:spam_headline differs' in capsys.readouterr().err


def test_an_unknown_marker_is_reported(tmp_path, capsys):
  (tmp_path / 'README.md').write_text('<!-- report:nonesuch -->\n<!-- /report:nonesuch -->\n')
  assert report_main.main(['--check', '--root', str(tmp_path)]) == 1
  assert 'report:nonesuch names no table' in capsys.readouterr().err


def test_tables_render_from_a_temporary_results_tree(tmp_path):
  _run(tmp_path, 'spam/rnn_dedup', {'roles': ['headline'], 'label': 'RNN', 'order': 2},
       _spam_results(0.9880))
  _run(tmp_path, 'spam/lstm_dedup', {'roles': ['headline'], 'label': 'LSTM', 'order': 3},
       _spam_results(0.9870), record=False)
  _run(tmp_path, 'cgan/default', {'roles': ['headline', 'baseline'], 'label': 'default',
                                  'setting': 'Adam β1 0.5'}, _cgan_results(0.8909))
  _write(tmp_path / 'results' / 'study.json',
         {'cgan_goal_after_30_epochs': {'run': 'cgan/default', 'goal': 0.85}})
  results = Results.load(tmp_path)
  spam = tables.RENDERERS['spam_dedup'](results, Path('docs'))
  rows = [line for line in spam.splitlines() if line.startswith('| **')]
  assert rows[0].startswith('| **RNN** | 98.80 ± 0.25 | 98.80 | ')
  assert rows[1].startswith('| **LSTM** | 98.70 ± 0.25 |')
  assert ('Measured on AMD EPYC 7B13, 2 cores (cpu), 2026-12-01, commit abc1234: '
          '`python launch.py --workdir=runs/spam/rnn_dedup`.') in spam
  assert spam.endswith('`results/spam/lstm_dedup`: run record missing.')
  cgan = tables.RENDERERS['cgan_headline'](results, Path('.'))
  assert '| **default**: Adam β1 0.5 | 89.09 | 30.84 | 2.294 | 81.44 | 434 s (7.2 min) |' in cgan
  assert 'met (89.1%)' in cgan and '[docs/cgan.md](docs/cgan.md)' in cgan
  assert tables.RENDERERS['textgen_results'](results, Path('docs')) == 'not run yet.'


def test_every_block_renders_the_same_twice(tmp_path, monkeypatch):
  root = _copy_of_the_repo(tmp_path)
  for page in [root / 'README.md', *(root / 'docs').glob('*.md')]:  # Blank every block.
    page.write_text(re.sub(r'(<!-- report:(\w+) -->\n).*?(<!-- /report:\2 -->)', r'\1\3',
                           page.read_text(), flags=re.DOTALL))
  monkeypatch.setattr(figures, 'draw_all', lambda results: [])  # Drawn in the tests below.
  assert report_main.main(['--check', '--root', str(root)]) == 1
  assert report_main.main(['--root', str(root)]) == 0
  assert report_main.main(['--check', '--root', str(root)]) == 0
  for page in [root / 'README.md', *(root / 'docs').glob('*.md')]:
    assert page.read_text() == (REPO / page.relative_to(root)).read_text(), page
  readme = (root / 'README.md').read_text()
  assert 'not run yet' not in readme
  assert len(readme) < 12_000, 'the front page grew past 12,000 characters'


FIGURES = ['bench_samples_per_s.png', 'cgan_curves.png', 'cgan_per_class.png',
           'cgan_samples_default.png', 'cgan_samples_study_recipe.png', 'judge_curves.png',
           'spam_curves.png', 'textgen_val_bpc.png']


def test_a_figure_is_drawn_and_each_is_linked():
  results = Results.load(REPO)
  found = {f.name: f for f in figures.figures(results)}
  assert sorted(found) == FIGURES
  links = figures.RENDERERS['textgen_figures'](results, Path('docs'))
  assert links == '![Text generator: validation bits/char per epoch](figures/textgen_val_bpc.png)'


def test_a_figure_is_drawn_from_its_runs(tmp_path):
  _run(tmp_path, 'fmnist_classifier/judge', {'roles': ['judge'], 'label': 'judge'}, {})
  _write(tmp_path / 'results' / 'fmnist_classifier' / 'judge' / 'metrics.jsonl',
         '{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, "train_loss": 0.4}\n')
  assert figures.draw_all(Results.load(tmp_path), tmp_path / 'out') == [
      tmp_path / 'out' / 'judge_curves.png']
  assert (tmp_path / 'out' / 'judge_curves.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.long
def test_every_figure_is_drawn(tmp_path):
  drawn = figures.draw_all(Results.load(REPO), tmp_path)
  assert sorted(p.name for p in drawn) == FIGURES
  assert all(p.read_bytes()[:4] == b'\x89PNG' for p in drawn)


def test_publish_copies_the_small_files_and_refuses_an_unfinished_run(tmp_path):
  run, dest = tmp_path / 'run', tmp_path / 'results' / 'textgen' / 'x'
  _write(run / 'config.json', {})
  with pytest.raises(UserError, match='has no results.json'):
    publish.publish(run, dest, roles=['headline'])
  _write(run / 'results.json', {'test_bpc': 2.0})
  with pytest.raises(UserError, match='--role=headline'):  # A new run must say how it is shown.
    publish.publish(run, dest)
  _write(run / 'samples.txt', 'epoch 1:\n|a\n\nepoch 2:\n|b\n\n')
  _write(run / 'seed_0' / 'split.json', 'x' * (publish.MAX_BYTES + 1))
  _write(run / 'seed_0' / 'metrics.jsonl', '{"epoch": 1}\n')
  _write(run / 'checkpoints' / '1' / 'params', 'big')
  lines = publish.publish(run, dest, roles=['headline'], label='LSTM', setting='all_chars',
                          order=1)
  assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob('*') if p.is_file()) == [
      'config.json', 'report.json', 'results.json', 'samples.txt', 'seed_0/metrics.jsonl']
  assert (dest / 'samples.txt').read_text() == 'epoch 2:\n|b\n'
  assert any(line.startswith('skipped') and 'split.json' in line for line in lines)
  assert jsonio.read_json_object(dest / 'report.json') == {
      'roles': ['headline'], 'label': 'LSTM', 'setting': 'all_chars', 'order': 1}
  publish.publish(run, dest, order=4)  # Published again: its report.json stays, flags update it.
  assert jsonio.read_json_object(dest / 'report.json')['label'] == 'LSTM'
  assert jsonio.read_json_object(dest / 'report.json')['order'] == 4


def test_a_candidate_takes_its_baselines_label_and_names_what_it_changed(tmp_path, capsys):
  base = _run(tmp_path, 'spam/rnn_study', {'roles': ['headline'], 'label': 'RNN',
                                           'setting': "study's protocol"}, _spam_results(0.98))
  _write(base / 'config.json', {'num_epochs': 10, 'optim': {'learning_rate': 1e-3}})
  run = tmp_path / 'run'
  _write(run / 'results.json', {'num_seeds': 1})
  _write(run / 'config.json', {'num_epochs': 10, 'optim': {'learning_rate': 5e-4},
                               'num_seeds': 1, 'devices': {'kind': 'cpu'}})
  _write(run / 'seed_0' / 'split.json', {'train': [0], 'val': [1], 'test': [2]})
  dest = tmp_path / 'results' / 'spam' / 'choices' / 'rnn_study_x'
  assert report_main.main(['publish', '--no-splits', str(run), str(dest), '--role=choice',
                           '--baseline=spam/rnn_study']) == 0
  assert not (dest / 'seed_0' / 'split.json').exists()
  # Placement fields (num_seeds, devices) are not training choices.
  assert jsonio.read_json_object(dest / 'report.json') == {
      'roles': ['choice'], 'baseline': 'spam/rnn_study', 'label': 'RNN',
      'setting': "study's protocol", 'changed': ['optim.learning_rate=0.0005']}
  assert report_main.main(['publish', str(run), str(dest), '--baseline=spam/nonesuch']) == 2
  assert capsys.readouterr().err.startswith('error: --baseline=spam/nonesuch:')


def _candidate(root: Path, name: str, val_accuracy: float, test_accuracy: float,
               changed: list[str]) -> None:
  _run(root, f'spam/choices/{name}', {'roles': ['choice'], 'baseline': 'spam/rnn_study',
                                       'label': 'RNN', 'setting': "study's protocol",
                                       'changed': changed},
       _spam_results(test_accuracy, val_accuracy))


def test_choices_pick_on_validation_and_show_the_picked_runs_test_figures_only(tmp_path):
  _run(tmp_path, 'spam/rnn_study', {
      'roles': ['headline', 'baseline'], 'label': 'RNN', 'setting': "study's protocol",
      'choices': {'title': "RNN, study's protocol", 'recipe': "the study's recipe"}},
       _spam_results(0.985, 0.985))
  # The best test accuracy belongs to the run with the worse validation accuracy: not picked.
  _candidate(tmp_path, 'rnn_study_lr5e-4', 0.995, 0.980, ['optim.learning_rate=0.0005'])
  _candidate(tmp_path, 'rnn_study_e20', 0.990, 0.999, ['num_epochs=20'])
  _write(tmp_path / 'results' / 'study.json', {'targets': {'spam': [STUDY_TARGET]}})
  results = Results.load(tmp_path)
  text = tables.RENDERERS['spam_choices'](results, Path('docs'))
  picked_row = next(line for line in text.splitlines() if '**picked**' in line)
  assert '| `optim.learning_rate=0.0005` | 99.50 |' in picked_row
  assert '`num_epochs=20`' in text and '99.90' not in text  # Validation only: no test figure.
  headline = tables.RENDERERS['spam_headline'](results, Path('.'))
  assert "| **RNN** | study's protocol, tuned | 98.00 ± 0.25 |" in headline
  assert 'Quality targets, on the runs picked on validation: 0 of 1 met' in headline
  row = tables.RENDERERS['spam_targets'](results, Path('docs')).splitlines()[-1]
  assert row == ("| RNN, study's protocol: test accuracy (%) | ≥ 99.00 | "
                 '`results/spam/choices/rnn_study_lr5e-4` | 98.00 | missed by 1.00 |')


@pytest.mark.parametrize('value, goal, at_least, verdict', [
    (0.9879984, 0.988, True, 'missed by 0.0002'),  # Never "missed by 0.00".
    (0.99, 0.99, True, 'met'), (2.49, 2.5, False, 'met'), (2.826, 2.5, False, 'missed by 0.33'),
])
def test_a_target_verdict_says_met_or_by_how_much_it_was_missed(value, goal, at_least, verdict):
  run = Run('spam/rnn_study', Path('.'), {'roles': ['baseline']}, {'test_accuracy': value}, {})
  target = {**STUDY_TARGET, 'goal': goal, 'at_least': at_least,
            'scale': 100.0 if goal < 1 else 1.0}
  results = Results(Path('.'), {run.key: run}, {'targets': {'spam': [target]}})
  assert tables.rows(results, 'targets spam')[0][1]['verdict'] == verdict


def test_a_resumed_candidate_says_its_training_time_covers_only_the_resumed_steps(tmp_path):
  _run(tmp_path, 'cgan/default', {'roles': ['headline', 'baseline'], 'label': 'default',
                                  'setting': 'Adam β1 0.5'}, _cgan_results(0.89))
  _run(tmp_path, 'cgan/choices/default_e60', {
      'roles': ['choice'], 'baseline': 'cgan/default', 'label': 'default',
      'changed': ['num_epochs=60']}, _cgan_results(0.95, val_fid=5.0, resumed_from_step=28110))
  _write(tmp_path / 'results' / 'study.json',
         {'cgan_goal_after_30_epochs': {'run': 'cgan/default', 'goal': 0.85}})
  headline = tables.RENDERERS['cgan_headline'](Results.load(tmp_path), Path('.'))
  row = next(line for line in headline.splitlines() if 'tuned on validation' in line)
  assert '`num_epochs=60`' in row and row.endswith('434 s (7.2 min), from step 28,110 on |')


def test_json_files_are_written_whole_and_a_torn_last_line_is_dropped(tmp_path):
  jsonio.write_json(tmp_path / 'a.json', {'b': 1, 'a': [2]})
  assert (tmp_path / 'a.json').read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
  assert not list(tmp_path.glob('.a.json.tmp-*'))
  assert jsonio.read_json_object(tmp_path / 'missing.json') == {}
  (tmp_path / 'm.jsonl').write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
  assert jsonio.read_jsonl(tmp_path / 'm.jsonl') == [{'epoch': 1}, {'epoch': 2}]
  (tmp_path / 'm.jsonl').write_text('{"epo\n{"epoch": 2}\n')
  with pytest.raises(UserError, match='m.jsonl:1 is not a JSON record'):
    jsonio.read_jsonl(tmp_path / 'm.jsonl')
