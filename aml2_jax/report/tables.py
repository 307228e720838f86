"""Every generated block of the docs, by marker name: `RENDERERS[name](root, page_dir)`.

A block is a Markdown table (or figure links) and the provenance lines under it, rendered only
from files under `root/results/`. A run that does not exist yet is a row saying so, so that the
same files always give the same text.
"""

import statistics
from pathlib import Path
from typing import Callable

from aml2_jax.report import choices, figures
from aml2_jax.report import sources
from aml2_jax.report.format import DASH, duration, mean_std, number, percent, span, table
from aml2_jax.report.sources import NOT_RUN, load_run, provenance

# The course study's reported figures (one split each; precision in whole percent): the
# reference the spam tables compare with.
STUDY_SPAM = {'rnn': ('98.39', '98'), 'lstm': ('98.48', '99')}
CGAN_TARGET = 0.85  # Conditional accuracy the default recipe is meant to reach in 30 epochs.
MODEL_NAMES = {'rnn': 'RNN', 'lstm': 'LSTM'}
SPAM_METRICS = (('accuracy', 'accuracy', 100), ('precision', 'precision', 100),
                ('precision (w)', 'precision_weighted', 100), ('recall', 'recall', 100),
                ('F1', 'f1', 100), ('MCC', 'mcc', 1), ('ham FPR', 'ham_fpr', 100),
                ('ROC-AUC', 'roc_auc', 100), ('PR-AUC', 'pr_auc', 100))
PROTOCOLS = {'dedup': 'deduplicated', 'study': "study's protocol"}


def _runs(root: Path, keys) -> list[sources.Run]:
  return [load_run(root, key) for key in keys]


def _block(body: str, runs: list[sources.Run], page_dir: Path | None = None,
           details: str | None = None) -> str:
  """`body` and its provenance; on the front page the commands are left to the `details` page."""
  link = f'[docs/{details}](docs/{details})' if details and page_dir == Path('.') else None
  lines = provenance(runs, link)
  return f'{body}\n\n{lines}' if lines else body


def _label(key: str) -> str:
  cell, rest = key.split('/')[-1].split('_', 1)
  return f'{MODEL_NAMES[cell]}, {PROTOCOLS.get(rest, rest)}'


# ---------------------------------------------------------------- spam

def spam_headline(root: Path, page_dir: Path) -> str:
  """The study's accuracy and precision against ours, both protocols, mean ± std of seeds."""
  header = ['model', 'protocol', 'accuracy (%)', 'precision, spam (%)',
            'precision, weighted (%)', 'F1, spam (%)']
  rows = [[f'study, {MODEL_NAMES[cell]}', 'one split, duplicates kept', acc, prec, DASH, DASH]
          for cell, (acc, prec) in STUDY_SPAM.items()]
  runs = _runs(root, sources.SPAM_RUNS)
  for run in runs:
    cell, protocol = run.key.split('/')[-1].split('_', 1)
    name = f'**{MODEL_NAMES[cell]}**'
    if not run.exists:
      rows.append([name, PROTOCOLS[protocol], NOT_RUN, DASH, DASH, DASH])
      continue
    rows.append([name, f'{PROTOCOLS[protocol]}, {run.results.get("num_seeds")} seeds',
                 *_spam_headline_figures(run)])
  for choice, run in choices.picked_candidates(root, 'spam'):
    runs.append(run)
    cell, protocol = choice.baseline.split('/')[-1].split('_', 1)
    rows.append([f'**{MODEL_NAMES[cell]}**', f'{PROTOCOLS[protocol]}, tuned on validation',
                 *_spam_headline_figures(run)])
  summary = choices.target_summary(root, 'spam', _page_link(page_dir, 'spam.md'))
  return _block(f'{table(header, rows)}\n\n{summary}', runs, page_dir, 'spam.md')


def _spam_headline_figures(run: sources.Run) -> list[str]:
  return [mean_std(run.results, f'test_{m}')
          for m in ('accuracy', 'precision', 'precision_weighted', 'f1')]


def _page_link(page_dir: Path, page: str) -> str:
  """A link to docs/`page` from a page in `page_dir`."""
  return f'[{page}]({page})' if page_dir == Path('docs') else f'[docs/{page}](docs/{page})'


def _spam_full(protocol: str) -> Callable[[Path, Path], str]:
  def render(root: Path, page_dir: Path) -> str:
    header = ['model'] + [title for title, _, _ in SPAM_METRICS]
    rows = []
    if protocol == 'study':
      rows = [[f'study, {MODEL_NAMES[c]} (one split)', acc, prec] + [DASH] * 7
              for c, (acc, prec) in STUDY_SPAM.items()]
    runs = _runs(root, [k for k in sources.SPAM_RUNS if k.endswith(protocol)])
    for run in runs:
      name = f'**{MODEL_NAMES[run.key.split("/")[-1].split("_")[0]]}**'
      if not run.exists:
        rows.append([name, NOT_RUN] + [DASH] * 8)
        continue
      rows.append([name] + [mean_std(run.results, f'test_{m}', 3 if scale == 1 else 2, scale)
                            for _, m, scale in SPAM_METRICS])
    return _block(table(header, rows), runs)
  return render


def _per_seed(run: sources.Run, name: str) -> list:
  return [seed.get(name) for seed in (run.results.get('per_seed') or {}).values()]


def _per_seed_mean_std(run: sources.Run, name: str) -> str:
  """mean ± sample std (in %) of a metric only the seeds' own results hold."""
  values = [v for v in _per_seed(run, name) if isinstance(v, (int, float))]
  if not values:
    return DASH
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return mean_std({name: statistics.fmean(values), f'{name}_std': std}, name)


def spam_epoch_choice(root: Path, page_dir: Path) -> str:
  """The study's last epoch against the epoch of the lowest validation loss, run by run."""
  header = ['run', 'epoch used (per seed)', 'validation accuracy (%)', 'test accuracy (%)',
            'F1, spam (%)']
  rows, runs = [], []
  for key in sources.SPAM_RUNS:
    for suffix, what in (('', 'last'), (sources.BEST_VAL_SUFFIX, 'lowest validation loss')):
      run = load_run(root, key + suffix)
      runs.append(run)
      if not run.exists:
        rows.append([_label(key), what, NOT_RUN, DASH, DASH])
        continue
      epochs = ', '.join(map(str, run.results.get('epochs_used') or [])) or DASH
      rows.append([_label(key), f'{what}: {epochs}',
                   _per_seed_mean_std(run, 'val_accuracy'), mean_std(run.results, 'test_accuracy'),
                   mean_std(run.results, 'test_f1')])
  return _block(table(header, rows), runs)


def spam_splits(root: Path, page_dir: Path) -> str:
  """The size of each part over the seeds' splits (ranges), and the held-out copies dropped."""
  header = ['run', 'seeds', 'messages used', 'train', 'validation', 'test', 'spam in test',
            'held-out copies dropped']
  rows, runs = [], _runs(root, sources.SPAM_RUNS)
  for run in runs:
    if not run.exists:
      rows.append([_label(run.key), NOT_RUN] + [DASH] * 6)
      continue
    seeds = list((run.results.get('per_seed') or {}).values())
    used = [sum(s.get(k, 0) for k in ('num_train', 'num_val', 'num_test',
                                      'num_held_out_token_twins_dropped')) for s in seeds]
    spam = [sum(s['test_confusion_matrix'][1]) for s in seeds if 'test_confusion_matrix' in s]
    rows.append([_label(run.key), str(len(seeds)), span(used),
                 *(span(_per_seed(run, k)) for k in ('num_train', 'num_val', 'num_test')),
                 span(spam), span(_per_seed(run, 'num_held_out_token_twins_dropped'))])
  return _block(table(header, rows), runs)


def spam_times(root: Path, page_dir: Path) -> str:
  header = ['run', 'training time per seed (s)', 'whole command']
  rows, runs = [], _runs(root, sources.SPAM_RUNS)
  for run in runs:
    if not run.exists:
      rows.append([_label(run.key), NOT_RUN, DASH])
      continue
    rows.append([_label(run.key), mean_std(run.results, 'train_wall_s', 1, 1.0),
                 duration(run.wall_s())])
  return _block(table(header, rows), runs)


# ---------------------------------------------------------------- text generation

def _textgen_label(key: str) -> tuple[str, str]:
  cell, objective = key.split('/')[-1].split('_', 1)
  return MODEL_NAMES[cell], objective + (' (study)' if objective == 'next_char' else '')


def _baseline_rows(root: Path) -> tuple[list[list[str]], sources.Run]:
  run = load_run(root, sources.TEXTGEN_BASELINES)
  if not run.exists:
    return [['5-gram Kneser-Ney (count baseline)', NOT_RUN, DASH]], run
  kn = run.results.get(f'kneser_ney_{run.results.get("order", 5)}') or {}
  order = run.results.get('order', 5)
  return [[f'{order}-gram Kneser-Ney (count baseline)', number(kn.get('val_bpc'), 3),
           number(kn.get('test_bpc'), 3)]], run


def textgen_headline(root: Path, page_dir: Path) -> str:
  header = ['model', 'objective', 'epochs', 'val bits/char', 'test bits/char']
  rows, runs = [], _runs(root, sources.TEXTGEN_RUNS)
  for run in runs:
    model, objective = _textgen_label(run.key)
    if not run.exists:
      rows.append([model, objective, NOT_RUN, DASH, DASH])
      continue
    rows.append([f'**{model}**', objective, str(run.get('epochs', default=DASH)),
                 number(run.get('val_bpc'), 3), number(run.get('test_bpc'), 3)])
  for choice, run in choices.picked_candidates(root, 'textgen'):
    runs.append(run)
    model, objective = _textgen_label(choice.baseline)
    rows.append([f'**{model}**, tuned on validation', objective,
                 str(run.get('epochs', default=DASH)), number(run.get('val_bpc'), 3),
                 number(run.get('test_bpc'), 3)])
  baseline_rows, baseline = _baseline_rows(root)
  rows += [[name, DASH, DASH, val, test] for name, val, test in baseline_rows]
  summary = choices.target_summary(root, 'textgen', _page_link(page_dir, 'textgen.md'))
  return _block(f'{table(header, rows)}\n\n{summary}', runs + [baseline], page_dir, 'textgen.md')


def textgen_results(root: Path, page_dir: Path) -> str:
  header = ['model', 'objective', 'epochs (best)', 'steps', 'val bits/char', 'test bits/char',
            'test loss (nats)', 'training and evaluation']
  rows, runs = [], _runs(root, sources.TEXTGEN_RUNS)
  for run in runs:
    model, objective = _textgen_label(run.key)
    if not run.exists:
      rows.append([model, objective, NOT_RUN] + [DASH] * 5)
      continue
    epochs, per_epoch = run.get('epochs'), run.get('steps_per_epoch')
    steps = f'{epochs * per_epoch:,}' if epochs and per_epoch else DASH
    rows.append([model, objective, f'{epochs} ({run.get("best_epoch", default=DASH)})', steps,
                 number(run.get('val_bpc'), 3), number(run.get('test_bpc'), 3),
                 number(run.get('test_loss'), 3),
                 duration(run.wall_s() or run.get('wall_s')) + _resumed(run)])
  return _block(table(header, rows), runs)


def textgen_baselines(root: Path, page_dir: Path) -> str:
  run = load_run(root, sources.TEXTGEN_BASELINES)
  header = ['model', 'val bits/char', 'test bits/char']
  if not run.exists:
    return table(header, [['count baselines', NOT_RUN, DASH]])
  r, order = run.results, run.results.get('order', 5)
  add_k = r.get(f'add_k_{order}') or {}
  rows = [
      [f'uniform over {r.get("vocab_size")} characters', number(r['uniform']['val_bpc'], 3),
       number(r['uniform']['test_bpc'], 3)],
      ['unigram (add-one)', number(r['unigram']['val_bpc'], 3),
       number(r['unigram']['test_bpc'], 3)],
      [f'{order}-gram, add-k (k = {add_k.get("k")}, chosen on validation)',
       number(add_k.get('val_bpc'), 3), number(add_k.get('test_bpc'), 3)],
      *[[f'**{name}**', f'**{val}**', f'**{test}**'] for name, val, test in
        _baseline_rows(root)[0]],
  ]
  split = r.get('split') or {}
  note = (f'Split seed {split.get("split_seed")}, {number(split.get("val_fraction"), 0, 100)}% '
          f'validation and {number(split.get("test_fraction"), 0, 100)}% test messages; '
          f'{r.get("val_windows", 0):,} validation and {r.get("test_windows", 0):,} test windows.')
  return _block(table(header, rows) + '\n\n' + note, [run])


def textgen_samples(root: Path, page_dir: Path) -> str:
  """The samples each run wrote after its last epoch (published as `samples.txt`)."""
  parts = []
  for key in sources.TEXTGEN_RUNS:
    try:
      text = (Path(root) / 'results' / key / 'samples.txt').read_text(encoding='utf-8').strip()
    except OSError:
      continue
    model, objective = _textgen_label(key)
    parts.append(f'{model}, {objective}:\n\n' + '\n'.join(f'    {line}' for line in
                                                          text.splitlines()))
  return '\n\n'.join(parts) if parts else f'Samples: {NOT_RUN}.'


# ---------------------------------------------------------------- cGAN

CGAN_LABELS = {'cgan/default': '**default**: Adam β1 0.5, generator moving average',
               'cgan/study_recipe': "**the study's recipe**: Adam β1 0.9, raw generator"}


def _cgan_row(run: sources.Run, prefix: str) -> list[str]:
  """Conditional accuracy, FID, class entropy, CAS of one reference set ('test_' or 'val_')."""
  names = ('conditional_accuracy', 'fid', 'class_entropy', 'cas_accuracy')
  # Runs that scored only the test set name its figures without a prefix.
  values = [run.get(prefix + n, *([n] if prefix == 'test_' else [])) for n in names]
  return [percent(values[0]), number(values[1], 2), number(values[2], 3), percent(values[3])]


def _real_images(runs: list[sources.Run]) -> list[str] | None:
  for run in runs:
    if run.get('fid_train_vs_test') is not None:
      accuracy = percent(run.get('classifier_test_accuracy'))
      return ['real training images against the test set', f'{accuracy} (judge accuracy)',
              number(run.get('fid_train_vs_test'), 2), DASH, f'{accuracy} (trained on real)']
  return None


def _training_seconds(run: sources.Run):
  return (run.get('seconds') or {}).get('gan_training', run.get('train_wall_s'))


def _training_time(run: sources.Run) -> str:
  """The GAN's training time; a resumed run's covers only the steps after its resume."""
  text = duration(_training_seconds(run))
  resumed = run.get('resumed_from_step')
  return f'{text}, from step {resumed:,} on' if resumed and text != DASH else text


def cgan_headline(root: Path, page_dir: Path) -> str:
  header = ['run', 'conditional accuracy (%)', 'FID (judge space)', 'class entropy', 'CAS (%)',
            'GAN training']
  rows, runs = [], _runs(root, sources.CGAN_RUNS)
  for run in runs:
    rows.append([CGAN_LABELS[run.key]] + (_cgan_row(run, 'test_') + [_training_time(run)]
                                          if run.exists else [NOT_RUN] + [DASH] * 4))
  for choice, run in choices.picked_candidates(root, 'cgan'):
    runs.append(run)
    rows.append([f'**tuned on validation**: default, {choices.changes(run, runs[0])}']
                + _cgan_row(run, 'test_') + [_training_time(run)])
  if real := _real_images(runs):
    rows.append(real + [DASH])
  target = f'Target: conditional accuracy ≥ {CGAN_TARGET:.0%} after 30 epochs: '
  default = runs[0].get('test_conditional_accuracy', 'conditional_accuracy')
  if default is None:
    target += f'default recipe {NOT_RUN}.'
  else:
    target += f'{"met" if default >= CGAN_TARGET else "missed"} ({percent(default, 1)}%).'
  summary = choices.target_summary(root, 'cgan', _page_link(page_dir, 'cgan.md'))
  return _block(f'{table(header, rows)}\n\nTest-set figures. {target} {summary}', runs,
                page_dir, 'cgan.md')


def cgan_results(root: Path, page_dir: Path) -> str:
  """Validation-slice and test-set figures of each run, and where its time went."""
  header = ['run', 'reference', 'conditional accuracy (%)', 'FID (judge space)',
            'class entropy', 'CAS (%)']
  rows, runs = [], _runs(root, sources.CGAN_RUNS)
  for run in runs:
    if not run.exists:
      rows.append([CGAN_LABELS[run.key], NOT_RUN] + [DASH] * 4)
      continue
    for prefix, reference in (('val_', 'validation slice'), ('test_', 'test set')):
      if prefix == 'test_' or run.get(prefix + 'conditional_accuracy') is not None:
        rows.append([CGAN_LABELS[run.key], reference] + _cgan_row(run, prefix))
  if real := _real_images(runs):
    rows.append([real[0], 'test set'] + real[1:])
  times = [['run', 'GAN training', 'judge training', 'evaluation', 'whole command']]
  for run in runs:
    seconds = run.get('seconds') or {}
    times.append([CGAN_LABELS[run.key], _training_time(run),
                  duration(seconds.get('judge_training')), duration(seconds.get('evaluation')),
                  duration(run.wall_s())] if run.exists else
                 [CGAN_LABELS[run.key], NOT_RUN, DASH, DASH, DASH])
  return _block(table(header, rows) + '\n\n' + table(times[0], times[1:]), runs)


def cgan_per_class(root: Path, page_dir: Path) -> str:
  runs = [run for run in _runs(root, sources.CGAN_RUNS) if figures.per_class(run)]
  if not runs:
    return f'Per-class accuracy: {NOT_RUN}.'
  classes = list(figures.per_class(runs[0]))
  header = ['class'] + [CGAN_LABELS[run.key].split(':')[0] for run in runs]
  rows = [[c] + [number(figures.per_class(run).get(c), 3) for run in runs] for c in classes]
  return _block(table(header, rows), runs)


def judge(root: Path, page_dir: Path) -> str:
  run = load_run(root, sources.JUDGE)
  header = ['model', 'parameters', 'test accuracy (%)', 'training']
  if not run.exists:
    return table(header, [['Fashion-MNIST CNN (the judge)', NOT_RUN, DASH, DASH]])
  row = ['Fashion-MNIST CNN (the judge)', f'{run.get("num_params", default=0):,}',
         percent(run.get('test_accuracy')), duration(run.wall_s() or run.get('train_wall_s'))]
  return _block(table(header, [row]), [run])


# ---------------------------------------------------------------- performance

def _bench(root: Path) -> dict:
  return sources.load_json(Path(root) / 'results' / sources.BENCH_PEERS) or {}


def _bench_provenance(root: Path, bench: dict) -> str:
  """From the benchmark's run record when published with one, else from its own header."""
  run = load_run(root, 'bench')
  if run.record:
    return provenance([sources.Run(run.key, run.path, bench, run.record)])
  m = bench.get('machine') or {}
  return (f'Measured on {m.get("cpu", "unknown CPU")}, {m.get("cores", "?")} cores, '
          f'{str(m.get("date_utc", ""))[:10]}, commit {str(m.get("git_commit", ""))[:7]}; '
          f'{bench.get("rounds", "?")} interleaved rounds, medians '
          f'(`results/{sources.BENCH_PEERS}`; command not recorded: `python -m aml2_jax.bench '
          '--peers` writes this file).')


def bench_summary(root: Path, page_dir: Path) -> str:
  bench = _bench(root)
  if not bench.get('models'):
    return f'Benchmark against the peers: {NOT_RUN}.'
  header = ['model', 'batch', 'aml2_jax samples/s', 'fastest peer', 'its samples/s', 'speed-up']
  rows = []
  for name, model in bench['models'].items():
    ours, peer = model.get('aml2_jax') or {}, model.get(model.get('fastest_peer')) or {}
    rows.append([name, str(ours.get('batch_size', DASH)), number(ours.get('samples_per_s'), 0),
                 figures.IMPLEMENTATIONS.get(model.get('fastest_peer'), DASH),
                 number(peer.get('samples_per_s'), 0),
                 f'{number(model.get("speedup_over_fastest_peer"), 2)}×'])
  return f'{table(header, rows)}\n\n{_bench_provenance(root, bench)}'


def bench_peers(root: Path, page_dir: Path) -> str:
  bench = _bench(root)
  if not bench.get('models'):
    return f'Benchmark against the peers: {NOT_RUN}.'
  header = (['model', 'batch'] + [f'{label} ms/step' for label in figures.IMPLEMENTATIONS.values()]
            + ['fastest peer', 'speed-up', 'utilisation: own shape', 'utilisation: machine'])
  rows = []
  for name, model in bench['models'].items():
    ours = model.get('aml2_jax') or {}
    rows.append([name, str(ours.get('batch_size', DASH))]
                + [number((model.get(impl) or {}).get('ms_per_step'), 2)
                   for impl in figures.IMPLEMENTATIONS]
                + [figures.IMPLEMENTATIONS.get(model.get('fastest_peer'), DASH),
                   f'{number(model.get("speedup_over_fastest_peer"), 2)}×',
                   number(ours.get('utilisation'), 2),
                   number(ours.get('utilisation_of_large_matmul'), 2)])
  return f'{table(header, rows)}\n\n{_bench_provenance(root, bench)}'


def bench_seeds(root: Path, page_dir: Path) -> str:
  """Several seeds in one program against the same seeds one after another (steady state)."""
  bench = _bench(root)
  models = {name: (m.get('aml2_jax') or {}) for name, m in (bench.get('models') or {}).items()}
  models = {name: ours for name, ours in models.items() if ours.get('seeds')}
  if not models:
    return f'Seeds in one program: {NOT_RUN}.'
  header = ['model', 'seeds', 'one seed ms/step', 'all seeds in one program ms/step',
            'seed-steps/s, one program', 'seed-steps/s, one after another', 'ratio']
  rows = [[name, str(ours['seeds']), number(ours.get('ms_per_step'), 2),
           number(ours.get('seeds_ms_per_step'), 2),
           number(ours.get('seed_steps_per_s_one_program'), 0),
           number(ours.get('seed_steps_per_s_sequential'), 0),
           f'{number(ours.get("seeds_speedup"), 2)}×'] for name, ours in models.items()]
  return f'{table(header, rows)}\n\n{_bench_provenance(root, bench)}'


def textgen_epoch(root: Path, page_dir: Path) -> str:
  """One whole epoch of the study's objective, timed as a run (what 30 epochs cost)."""
  run = load_run(root, sources.TEXTGEN_ONE_EPOCH)
  header = ['run', 'steps of 128 windows', 'whole run (one epoch, validation, samples, test)',
            'per step, all included', '30 epochs at that rate']
  steps, wall = run.get('steps_per_epoch'), run.wall_s() or run.get('wall_s')
  if not run.exists or not steps or not wall:
    return table(header, [['LSTM, next_char', NOT_RUN] + [DASH] * 3])
  row = ['LSTM, next_char', f'{steps:,}', duration(wall), f'{wall / steps * 1000:.1f} ms',
         duration(30 * wall)]
  return _block(table(header, [row]), [run])


def main_job(root: Path, page_dir: Path) -> str:
  """End to end: the README's main command, timed as a user runs it, phase by phase."""
  run = load_run(root, sources.MAIN_JOB)
  header = ['command', 'whole command', 'judge training', 'GAN training (30 epochs)',
            'evaluation', 'test conditional accuracy (%)']
  if run.record is None:
    return table(header, [['`python launch.py --config=configs/cgan.py`', NOT_RUN] + [DASH] * 4])
  seconds = run.get('seconds') or {}
  row = [f'`{run.last_invocation().get("command")}`', duration(run.wall_s()),
         duration(seconds.get('judge_training')), duration(seconds.get('gan_training')),
         duration(seconds.get('evaluation')),
         percent(run.get('test_conditional_accuracy', 'conditional_accuracy'))]
  return _block(table(header, [row]), [run])


# ---------------------------------------------------------------- configs and figures

def configs(root: Path, page_dir: Path) -> str:
  """Each config: how to run it, what it gives and how long it took, from its published run."""
  header = ['run', 'result', 'time', 'measured on']
  spec = [
      ('cgan.py', '', 'cgan/default', 'test conditional accuracy',
       lambda r: percent(r.get('test_conditional_accuracy', 'conditional_accuracy'), 1) + '%'),
      ('fmnist_classifier.py', '', sources.JUDGE, 'test accuracy',
       lambda r: percent(r.get('test_accuracy'), 1) + '%'),
      *[(f'spam_{c}.py', ' --config.num_seeds=5', f'spam/{c}_dedup', 'test accuracy, 5 seeds',
         lambda r: mean_std(r.results, 'test_accuracy') + '%') for c in ('rnn', 'lstm')],
      *[(f'textgen_{c}.py', '', f'textgen/{c}_next_char', 'test bits/char',
         lambda r: number(r.get('test_bpc'), 3)) for c in ('rnn', 'lstm')],
  ]
  rows = []
  for config, flags, key, what, value in spec:
    run = load_run(root, key)
    command = f'`python launch.py --config=configs/{config}{flags}`'
    if not run.exists:
      rows.append([command, NOT_RUN, DASH, DASH])
      continue
    last = run.last_invocation()
    machine = sources.machine_text(last.get('machine') or {}) if last else sources.RECORD_MISSING
    time = run.wall_s() or run.get('train_wall_s', 'wall_s')
    per_seed = ' per seed' if not run.wall_s() and key.startswith('spam') else ''
    rows.append([command, f'{what}: {value(run)}',
                 duration(time) + per_seed + _resumed(run), machine])
  return table(header, rows)


def _resumed(run) -> str:
  """', resumed 3×' for a run trained over several invocations (its time is their sum)."""
  trained = [i for i in (run.record or {}).get('invocations') or [] if i.get('mode') == 'train']
  return f', resumed {len(trained) - 1}×' if len(trained) > 1 else ''


def _figure_links(page: str) -> Callable[[Path, Path], str]:
  def render(root: Path, page_dir: Path) -> str:
    found = figures.available(root, page)
    if not found:
      return f'Figures: {NOT_RUN}.'
    rel = Path('.') if page_dir == Path('docs') else Path('docs')
    return '\n\n'.join(f'![{f.title}]({(rel / "figures" / f.name).as_posix()})' for f in found)
  return render


RENDERERS: dict[str, Callable[[Path, Path], str]] = {
    'configs': configs,
    'main_job': main_job,
    'spam_headline': spam_headline,
    'spam_dedup': _spam_full('dedup'),
    'spam_study': _spam_full('study'),
    'spam_splits': spam_splits,
    'spam_times': spam_times,
    'spam_epoch_choice': spam_epoch_choice,
    'textgen_headline': textgen_headline,
    'textgen_results': textgen_results,
    'textgen_baselines': textgen_baselines,
    'textgen_samples': textgen_samples,
    'cgan_headline': cgan_headline,
    'cgan_results': cgan_results,
    'cgan_per_class': cgan_per_class,
    'judge': judge,
    'bench_summary': bench_summary,
    'bench_peers': bench_peers,
    'bench_seeds': bench_seeds,
    'textgen_epoch': textgen_epoch,
    **{f'{page}_figures': _figure_links(page) for page in ('spam', 'textgen', 'cgan',
                                                            'performance')},
    **choices.RENDERERS,
}
