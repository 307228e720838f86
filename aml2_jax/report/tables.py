"""The docs' tables, by marker name: `RENDERERS[name](results, page_dir)`, as tables.toml declares.

Here is what declarations name: row sources (`SOURCES`), values computed from a run (`FIELDS`),
notes (`NOTES`). A candidate shows validation figures only; only the picked run shows test ones.
"""

import statistics
import tomllib
from pathlib import Path

from aml2_jax.report.render import fill, markdown, number, page_link
from aml2_jax.report.runs import NOT_RUN, Results, Run, machine_text, provenance

TOML = tomllib.loads((Path(__file__).parent / 'tables.toml').read_text(encoding='utf-8'))
TABLES = {name: t for name, t in TOML.items() if isinstance(t, dict) and 'rows' in t}
CHOICES, FIGURES = TOML['choices'], TOML['figures']


def _seeds(run: Run) -> dict[str, list | float]:
  """Each seed's values by name, with `used`, `spam_in_test`, `<name>_mean`, `<name>_mean_std`."""
  seeds = list(run.get('per_seed', {}).values())
  found = {k: [s.get(k) for s in seeds] for k in set().union(*seeds)}
  found['used'] = [sum(s.get(k, 0) for k in ('num_train', 'num_val', 'num_test',
                                             'num_held_out_token_twins_dropped')) for s in seeds]
  found['spam_in_test'] = [sum(s['test_confusion_matrix'][1]) for s in seeds
                           if 'test_confusion_matrix' in s]
  for k, v in list(found.items()):
    if v and all(isinstance(x, (int, float)) for x in v):
      found.update({f'{k}_mean': statistics.fmean(v),
                    f'{k}_mean_std': statistics.stdev(v) if len(v) > 1 else 0.0})
  return found


FIELDS = {  # Values computed from a run, by the name a cell uses.
    'wall': Run.wall_s, 'seeds': _seeds,
    'wall_30': lambda r: 30 * r.wall_s() if r.wall_s() else None,
    'resumed_from': lambda r: (f', from step {r.get("resumed_from_step"):,} on'  # Its time: after.
                               if r.get('resumed_from_step') else ''),
    'ms_per_step': lambda r: (r.wall_s() / r.get('steps_per_epoch') * 1000
                              if r.wall_s() and r.get('steps_per_epoch') else None),
    'steps': lambda r: r.get('epochs', 0) * r.get('steps_per_epoch', 0) or None,
    'resumed': lambda r: (f', resumed {n - 1}×' if (n := sum(
        i.get('mode') == 'train' for i in r.invocations())) > 1 else ''),
    'key': lambda r: r.key, 'folder': lambda r: r.path.name,
    'command': lambda r: r.invocations()[-1].get('command') if r.invocations() else None,
    'machine': lambda r: (machine_text(r.invocations()[-1].get('machine') or {})
                          if r.invocations() else 'run record missing'),
    'config_result': lambda r: fill(r.config['result'], getter(r, {})),
    'epoch_kind': lambda r: 'lowest validation loss' if 'best_val' in r.roles else 'last',
    **{f'{part}_lowest_class': lambda r, part=part: min(  # A cGAN run's lowest class accuracy.
        (r.get(f'{part}_per_class_accuracy') or {}).values(), default=None)
       for part in ('val', 'test')},
}


def getter(run: Run | None, extra: dict):
  """A row's `get(field)`: the source's fields, FIELDS, report.json, results.json (`a.b`: in a)."""
  def get(name: str):
    head, *path = name.split('.')
    value = (extra.get(head) if run is None or head in extra else FIELDS[head](run)
             if head in FIELDS else run.report.get(head, run.get(head)))
    for key in path:
      value = value.get(key) if isinstance(value, dict) else None
    return value
  return get


SOURCES = {  # name: (results, argument) -> runs or (run, fields); `headline spam`: by role.
    'role': lambda res, role: res.select(role),
    'headline': lambda res, e: res.select('headline', e),
    'picks': lambda res, e: [p for b in res.select('baseline', e)  # Where a candidate won.
                             if (p := contest(res, b)[1]) is not b],
    'study': lambda res, key: [(None, item) for item in res.study.get(key, [])],
    'dedup': lambda res, dedup: [r for r in res.select('headline', 'spam')
                                 if r.get('dedup') == (dedup == 'true')],
    'best_val': lambda res, e: [r for base in res.select('headline', e) for r in [base, *(
        v for v in res.select('best_val') if v.baseline == base.key)]],
    'configs': lambda res, _: sorted(res.select('config'), key=lambda r: r.config['order']),
    'real_images': lambda res, e: [r for r in res.select('headline', e)
                                   if r.get('fid_train_vs_test') is not None][:1],
    'parts': lambda res, e: [  # A cGAN run on the validation slice (if scored), then on test.
        (r, {'reference': reference, 'q': {k[len(part):]: v for k, v in r.results.items()
                                           if k.startswith(part)}})
        for r in res.select('headline', e)
        for part, reference in (('val_', 'validation slice'), ('test_', 'test set'))
        if part == 'test_' or r.get('val_conditional_accuracy') is not None],
    'bench': lambda res, which: [  # A row per model (`seeds`: those timed with several seeds).
        (run, {**m, 'model': name, 'peer': m.get(m.get('fastest_peer')),
               'fastest': TOML['implementations'].get(m.get('fastest_peer'))})
        for run in res.select('bench') for name, m in run.get('models', {}).items()
        if which == 'models' or m.get('aml2_jax', {}).get('seeds')],
    'targets': lambda res, e: [(run, t) for t, run in _verdicts(res, e)],
    'contest': lambda res, arg: contest(res, res.runs[arg.split()[0]], int(arg.split()[1]))[0],
    'peers': lambda res, figure: [  # A row per implementation: {model: its figure}.
        (run, {'peer': label, 'models': {name: m.get(impl, {}).get(figure, 0.0)
                                         for name, m in run.get('models', {}).items()}})
        for run in res.select('bench') for impl, label in TOML['implementations'].items()],
}


def rows(results: Results, source: str) -> list[tuple[Run | None, dict]]:
  """(run, the source's own fields) of each row of `source` ('headline spam': SOURCES)."""
  kind, _, argument = source.partition(' ')
  return [r if isinstance(r, tuple) else (r, {}) for r in SOURCES[kind](results, argument)]


def draw(name: str, results: Results, page_dir: Path) -> str:
  """The block of table `name` of tables.toml: the table, its notes and its provenance."""
  table = TABLES[name]
  rows_ = [(row, cells) for source, cells in table['rows'] for row in rows(results, source)]
  runs = list({id(run): run for (run, _), _ in rows_ if run}.values())
  if not runs:
    return f'{NOT_RUN}.'
  parts = [markdown(table['header'], [[fill(cell, getter(*row)) for cell in cells]
                                      for row, cells in rows_])]
  for note in table.get('notes', []):
    kind, _, argument = note.partition(' ')
    parts.append(NOTES[kind](results, page_dir, argument) if kind in NOTES
                 else fill(note, getter(runs[0], {})))
  if table.get('provenance', True):
    details = table.get('details') if page_dir == Path('.') else None
    parts.append(provenance(runs, page_link(page_dir, details) if details else None))
  return '\n\n'.join(part for part in parts if part)


def contest(results: Results, baseline: Run, epochs: int = 0) -> tuple[list[Run], Run]:
  """The baseline and its candidates (trained `epochs` epochs, if given), and the best on
  validation (tables.toml, `[choices]`)."""
  # Rounded: seeds averaged in another order differ in the last bit. The baseline wins a tie.
  runs = [baseline, *(r for r in results.select('choice') if r.baseline == baseline.key)]
  runs = [r for r in runs if not epochs or (r.metrics() or [{}])[-1].get('epoch') == epochs]
  score = [s.split() for s in CHOICES[baseline.key.split('/')[0]]['score']]
  return runs, max(runs, key=lambda run: tuple(
      round(v if way == 'max' else -v, 9) if isinstance(v := getter(run, {})(field), (int, float))
      else float('-inf') for way, field in score))


def choices(results: Results, page_dir: Path, experiment: str) -> str:
  """A table per baseline: its candidates' changed fields and validation figures."""
  parts, shown, spec = [], [], CHOICES[experiment]
  for base in results.select('baseline', experiment):
    runs, best = contest(results, base)
    shown += runs
    parts.append(markdown([base.choices['title'], 'changed', *spec['header']], [
        ['**picked**' if r is best else '', fill('{changed:code}', getter(r, {})) if r is not base
         else base.choices['recipe'], *(fill(cell, getter(r, {})) for cell in spec['cells'])]
        for r in runs]))
  return '\n\n'.join(parts + [provenance(shown)]) if parts else f'{NOT_RUN}.'


def _verdicts(results: Results, experiment: str) -> list[tuple[dict, Run]]:
  """(target of study.json with its goal, figure and verdict as text, the picked run)."""
  found = []
  for t in results.study.get('targets', {}).get(experiment, []):
    run = contest(results, results.runs[t['run']], t.get('epochs', 0))[1]
    value = getter(run, {})(t['metric'])  # A results.json key or a FIELDS name.
    gap, digits = abs(value - t['goal']) * t['scale'], t['digits']
    met = value >= t['goal'] if t['at_least'] else value <= t['goal']
    while not met and round(gap, digits) == 0:  # A miss never reads "missed by 0.00".
      digits += 1
    found.append(({**t, 'goal': f'{"≥" if t["at_least"] else "≤"} '
                   f'{number(t["goal"], digits=t["digits"], scale=t["scale"])}',
                   'figure': number(value, t['digits'], t['scale']),
                   'verdict': 'met' if met else f'missed by {gap:.{digits}f}'}, run))
  return found


def _summary(results: Results, page_dir: Path, experiment: str) -> str:
  verdicts = [t['verdict'] for t, _ in _verdicts(results, experiment)]
  return (f'Quality targets, on the runs picked on validation: {verdicts.count("met")} of '
          f'{len(verdicts)} met (each with its gap in {page_link(page_dir, experiment + ".md")}).')


def _goal(results: Results, page_dir: Path, experiment: str) -> str:
  goal = results.study['cgan_goal_after_30_epochs']
  value = results.runs[goal['run']].get('test_conditional_accuracy')
  return (f'Test-set figures. Target: conditional accuracy ≥ {goal["goal"]:.0%} after 30 epochs: '
          f'{"met" if value >= goal["goal"] else "missed"} ({number(value, 1, 100)}%). '
          + _summary(results, page_dir, experiment))


NOTES = {'@summary': _summary, '@goal': _goal,
         '@table': lambda results, page_dir, name: draw(name, results, page_dir)}


def cgan_per_class(results: Results, page_dir: Path) -> str:
  """Per-class conditional accuracy on the test set: a row per class, a column per run."""
  runs = [r for r in results.select('headline', 'cgan') if r.get('test_per_class_accuracy')]
  found = [r.get('test_per_class_accuracy') for r in runs]
  rows = [[c, *(number(f.get(c), 3) for f in found)] for c in TOML['fashion_mnist_classes']
          if runs and c in found[0]]
  return '\n\n'.join([markdown(['class', *(f'**{r.label}**' for r in runs)], rows),
                      provenance(runs)]) if runs else f'{NOT_RUN}.'


def textgen_samples(results: Results, page_dir: Path) -> str:
  """The samples each run wrote after its last epoch (published as `samples.txt`)."""
  return '\n\n'.join(f'{r.label}, {r.setting}:\n\n' + '\n'.join(
      f'    {line}' for line in (r.path / 'samples.txt').read_text('utf-8').strip().splitlines())
      for r in results.select('headline', 'textgen') if (r.path / 'samples.txt').is_file()
  ) or f'Samples: {NOT_RUN}.'


RENDERERS = {  # name: (results, page_dir) -> the block's text.
    **{name: (lambda res, page_dir, n=name: draw(n, res, page_dir)) for name in TABLES},
    'cgan_per_class': cgan_per_class, 'textgen_samples': textgen_samples,
    **{f'{e}_choices': (lambda res, page_dir, e=e: choices(res, page_dir, e)) for e in CHOICES},
}
