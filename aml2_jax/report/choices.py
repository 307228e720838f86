"""Training choices tried on validation, the one each table picks, and the quality targets.

A candidate is a published run in `results/<experiment>/choices/<baseline>_<what>/`: the
baseline's config with some training fields changed. Its row shows those fields and its
validation figures only; `Choice.score` picks one run per baseline from those figures (the
baseline on a tie), and only the picked run's test figures are shown (`targets`). The test set
plays no part in the choice.
"""

import dataclasses
from pathlib import Path
from typing import Callable

from aml2_jax.report import sources
from aml2_jax.report.format import DASH, number, percent, table
from aml2_jax.report.sources import NOT_RUN, Run, load_run, provenance

CHOICES_DIR = 'choices'
# Config fields that place or speed up a run without changing what it learns: not "changes".
NOT_TRAINING = ('devices', 'data.dir', 'num_seeds', 'seeds_in_one_program', 'num_devices',
                'steps_per_call', 'backend_defaults', 'checkpoint_every_steps',
                'keep_checkpoints', 'model.unroll', 'model.ops')


@dataclasses.dataclass(frozen=True)
class Choice:
  """How one baseline's candidates are shown and compared (on validation only)."""
  baseline: str  # The published run the candidates change, e.g. 'spam/rnn_study'.
  label: str
  columns: tuple[tuple[str, Callable[[Run], float | None], Callable[[float | None], str]], ...]
  score: Callable[[Run], tuple]  # Larger is better; compared only between runs that exist.
  baseline_label: str = "the study's recipe"  # What the baseline's row says it changed.


def _seed_mean(name: str) -> Callable[[Run], float | None]:
  def value(run: Run) -> float | None:
    values = [s.get(name) for s in (run.results.get('per_seed') or {}).values()]
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else run.get(name)
  return value


def _field(*names: str) -> Callable[[Run], float | None]:
  return lambda run: run.get(*names)


def _num(digits: int) -> Callable[[float | None], str]:
  return lambda value: number(value, digits)


def _higher(value) -> float:
  """A score where a larger figure is better; a missing one loses."""
  return value if isinstance(value, (int, float)) else float('-inf')


def _lower(value) -> float:
  """A score where a smaller figure is better; a missing one loses."""
  return -value if isinstance(value, (int, float)) else float('-inf')


SPAM_COLUMNS = (('validation accuracy (%)', _seed_mean('val_accuracy'), percent),
                ('validation loss', _seed_mean('val_loss'), _num(4)))


def _spam_score(run: Run) -> tuple:
  # Accuracy first, the loss breaks ties. Rounded: equal counts of right answers averaged over
  # the seeds in another order can differ in the last bit.
  accuracy = _seed_mean('val_accuracy')(run)
  return (_higher(round(accuracy, 9) if accuracy is not None else None),
          _lower(_seed_mean('val_loss')(run)))


PROTOCOL_LABELS = {'study': "study's protocol", 'dedup': 'deduplicated'}
CHOICES = {
    'spam': tuple(Choice(f'spam/{cell}_{protocol}', f'{cell.upper()}, {label}', SPAM_COLUMNS,
                         _spam_score)
                  for protocol, label in PROTOCOL_LABELS.items() for cell in ('rnn', 'lstm')),
    'cgan': (Choice('cgan/default', 'cGAN', (
        ('val. conditional accuracy (%)', _field('val_conditional_accuracy'), percent),
        ('val. FID', _field('val_fid'), _num(2)),
        ('val. CAS (%)', _field('val_cas_accuracy'), percent)),
        lambda run: (_lower(run.get('val_fid')),), 'the default recipe'),),
    'textgen': tuple(Choice(f'textgen/lstm_{objective}', f'LSTM, {objective}', (
        ('validation bits/char', _field('val_bpc'), _num(3)),),
        lambda run: (_lower(run.get('val_bpc')),), "the study's settings")
        for objective in ('next_char', 'all_chars')),
}


def candidates(root: Path, baseline: str) -> list[Run]:
  """The published candidate runs of `baseline`, by name."""
  experiment, name = baseline.split('/')
  folder = Path(root) / 'results' / experiment / CHOICES_DIR
  paths = sorted(folder.glob(f'{name}_*')) if folder.is_dir() else []
  return [load_run(root, f'{experiment}/{CHOICES_DIR}/{p.name}') for p in paths
          if (p / 'results.json').is_file()]


def _flat(tree: dict, prefix: str = '') -> dict:
  """{'optim.learning_rate': 0.001, ...} of a resolved config.json."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def changes(run: Run, baseline: Run) -> str:
  """The config fields whose values `run` trained with and its baseline did not (from the
  resolved `config.json` of each, so a field set back to its default shows too)."""
  mine, base = (_flat(sources.load_json(r.path / 'config.json') or {}) for r in (run, baseline))
  if not mine or not base:
    return 'config.json missing'
  changed = [f'`{name}={mine[name]}`' for name in sorted(mine)
             if not name.startswith(NOT_TRAINING) and mine[name] != base.get(name)]
  return ' '.join(changed) or 'nothing'


def picked(root: Path, choice: Choice) -> Run | None:
  """The run with the best validation score among the baseline and its candidates."""
  runs = [r for r in [load_run(root, choice.baseline), *candidates(root, choice.baseline)]
          if r.exists]
  return max(runs, key=choice.score) if runs else None


def picked_candidates(root: Path, experiment: str) -> list[tuple[Choice, Run]]:
  """(choice, picked run) wherever validation picked a candidate over the published baseline."""
  picks = [(choice, picked(root, choice)) for choice in CHOICES[experiment]]
  return [(choice, run) for choice, run in picks if run and run.key != choice.baseline]


def render(experiment: str) -> Callable[[Path, Path], str]:
  def block(root: Path, page_dir: Path) -> str:
    tables, shown = [], []
    for choice in CHOICES[experiment]:
      baseline = load_run(root, choice.baseline)
      if not baseline.exists:
        tables.append(f'{choice.label}: {NOT_RUN}.')
        continue
      best = picked(root, choice)
      runs = [baseline, *candidates(root, choice.baseline)]
      shown += runs
      header = [choice.label, 'changed', *(title for title, _, _ in choice.columns)]
      rows = [['**picked**' if run.key == best.key else '',
               choice.baseline_label if run is baseline else changes(run, baseline),
               *(fmt(value(run)) for _, value, fmt in choice.columns)] for run in runs]
      tables.append(table(header, rows))
    lines = provenance(shown)
    return '\n\n'.join(tables + ([lines] if lines else []))
  return block


# ---------------------------------------------------------------- targets

@dataclasses.dataclass(frozen=True)
class Target:
  """A quality target: `key` of the picked run's results, compared with `goal`."""
  experiment: str
  baseline: str
  what: str
  key: str
  goal: float
  at_least: bool  # True: the figure must be >= goal; False: <= goal.
  scale: float = 100.0  # Shown as percent (100) or as is (1).
  digits: int = 2


# Spam: accuracy and F1 with duplicates kept (the study's protocol), accuracy deduplicated.
SPAM_GOALS = {'study': (('test accuracy', 'test_accuracy', 0.99),
                        ('test F1, spam', 'test_f1', 0.96)),
              'dedup': (('test accuracy', 'test_accuracy', 0.988),)}
TARGETS = (
    *(Target('spam', f'spam/{cell}_{protocol}',
             f'{cell.upper()}, {PROTOCOL_LABELS[protocol]}: {what} (%)', key, goal, True)
      for protocol, goals in SPAM_GOALS.items() for cell in ('rnn', 'lstm')
      for what, key, goal in goals),
    *(Target('textgen', f'textgen/lstm_{objective}', f'LSTM, {objective}: validation bits/char',
             'val_bpc', 2.5, False, 1.0, 3) for objective in ('next_char', 'all_chars')),
    Target('cgan', 'cgan/default', 'conditional accuracy (%)', 'test_conditional_accuracy',
           0.92, True),
    Target('cgan', 'cgan/default', 'FID (judge space)', 'test_fid', 20.0, False, 1.0),
    Target('cgan', 'cgan/default', 'CAS (%)', 'test_cas_accuracy', 0.85, True),
    Target('cgan', 'cgan/default', 'lowest class accuracy (%)', 'test_per_class_accuracy',
           0.80, True),
)


def _value(run: Run, key: str) -> float | None:
  value = run.get(key)
  if isinstance(value, dict):  # Per-class accuracies: the target is on the lowest.
    value = min(value.values()) if value else None
  return value if isinstance(value, (int, float)) else None


def _verdict(target: Target, value: float | None) -> str:
  if value is None:
    return NOT_RUN
  met = value >= target.goal if target.at_least else value <= target.goal
  if met:
    return 'met'
  gap = abs(value - target.goal) * target.scale
  digits = target.digits
  while round(gap, digits) == 0:  # A miss never reads "missed by 0.00".
    digits += 1
  return f'missed by {gap:.{digits}f}'


def targets(experiment: str) -> Callable[[Path, Path], str]:
  """Each target against the run picked on validation (its test figures, shown once here)."""
  def block(root: Path, page_dir: Path) -> str:
    choices = {c.baseline: c for c in CHOICES[experiment]}
    header = ['target', 'goal', 'run picked on validation', 'figure', 'verdict']
    rows = []
    for target in (t for t in TARGETS if t.experiment == experiment):
      run = picked(root, choices[target.baseline])
      sign = '≥' if target.at_least else '≤'
      goal = f'{sign} {number(target.goal, target.digits, target.scale)}'
      if run is None:
        rows.append([target.what, goal, NOT_RUN, DASH, NOT_RUN])
        continue
      value = _value(run, target.key)
      rows.append([target.what, goal, f'`results/{run.key}`',
                   number(value, target.digits, target.scale), _verdict(target, value)])
    return table(header, rows)
  return block


def target_summary(root: Path, experiment: str, page: str) -> str:
  """'Quality targets, ...: 2 of 6 met (...)', one line under a headline table."""
  verdicts = []
  for target in (t for t in TARGETS if t.experiment == experiment):
    choice = next(c for c in CHOICES[experiment] if c.baseline == target.baseline)
    run = picked(root, choice)
    verdicts.append(_verdict(target, _value(run, target.key) if run else None))
  met = sum(v == 'met' for v in verdicts)
  return (f'Quality targets, on the runs picked on validation: {met} of {len(verdicts)} met '
          f'(each with its gap in {page}).')


RENDERERS = {**{f'{e}_choices': render(e) for e in CHOICES},
             **{f'{e}_targets': targets(e) for e in CHOICES}}
