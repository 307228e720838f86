"""Several seeds of the spam classifier: one config per seed, and the mean ± std over seeds.

`config.num_seeds = N` trains seeds `config.seed + k`, k < N, each in `<workdir>/seed_<seed>/` with
its own checkpoints, `tokenizer.json`, `split.json`, metrics and `results.json`; the workdir's
`results.json` holds the mean and std over seeds. With `config.data.split_per_seed` seed k also
splits with `split_seed + k`, so the spread includes the luck of the split, not only of the
initialisation.
"""

from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax.spam import metrics
from aml2_jax.runtime.metrics_logging import write_json

AGGREGATED = tuple(f'test_{name}' for name in ('loss',) + metrics.SCALAR_NAMES) + (
    'train_wall_s',)


def run_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """One config per seed: seed `config.seed + k` (and split seed + k with `split_per_seed`)."""
  runs = []
  for k in range(config.num_seeds):
    run = config.copy_and_resolve_references()
    run.seed = config.seed + k
    run.num_seeds = 1
    if config.data.split_per_seed:
      run.data.split_seed = config.data.split_seed + k
    runs.append(run)
  return runs


def seed_dir(workdir: Path, seed: int) -> Path:
  return Path(workdir) / f'seed_{seed}'


def summarize(config: ml_collections.ConfigDict, per_seed: dict[int, dict]) -> dict:
  """Mean and std (ddof=1; 0 for one seed) of each metric over seeds, plus every seed's results.

  The confusion matrix is summed over seeds (counts stay integers).
  """
  runs = list(per_seed.values())
  aggregate = {'num_seeds': len(runs), 'seeds': list(per_seed),
               'num_params': runs[0]['num_params'], 'model_cell': config.model.cell,
               'dedup': config.data.dedup, 'split_protocol': runs[0].get('split_protocol'),
               'tokenizer_fit': config.data.tokenizer_fit,
               'val_fraction': config.data.val_fraction,
               'epoch_selection': runs[0].get('epoch_selection'),
               'epochs_used': [r.get('epoch_used') for r in runs],
               'split_seeds': [r['split_seed'] for r in runs]}
  for name in AGGREGATED:
    values = np.array([r[name] for r in runs if name in r], np.float64)
    if len(values):
      aggregate[name] = float(values.mean())
      aggregate[f'{name}_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  aggregate['test_confusion_matrix'] = np.sum(
      [r['test_confusion_matrix'] for r in runs], axis=0).tolist()
  aggregate['per_seed'] = {str(seed): r for seed, r in per_seed.items()}
  return aggregate


def format_table(aggregate: dict) -> str:
  """The printed results of `summarize`: one row per metric, mean ± std, then each seed's value."""
  a = aggregate
  lines = [f'spam {a["model_cell"]}: {a["num_seeds"]} seed(s) {a["seeds"]}, dedup={a["dedup"]}, '
           f'tokenizer fit on {a["tokenizer_fit"]}, {a["num_params"]:,} params; test scored at '
           f'epoch(s) {a["epochs_used"]} ({a["epoch_selection"]})',
           f'{"metric":<25}{"mean ± std":>20}   per seed']
  for name in AGGREGATED:
    if name in a:
      per_seed = ' '.join(f'{r[name]:.4f}' for r in a['per_seed'].values() if name in r)
      lines.append(f'{name:<25}{a[name]:>11.4f} ± {a[name + "_std"]:.4f}   {per_seed}')
  (tn, fp), (fn, tp) = a['test_confusion_matrix']
  lines.append(f'confusion matrix summed over seeds: ham->ham {tn}, ham->spam {fp}, '
               f'spam->ham {fn}, spam->spam {tp}')
  return '\n'.join(lines)


def write_summary(config: ml_collections.ConfigDict, workdir: Path,
                  per_seed: dict[int, dict]) -> dict:
  """Writes (and prints) the summary over seeds into `<workdir>/results.json`."""
  aggregate = summarize(config, per_seed)
  write_json(workdir / 'results.json', aggregate)
  console.say(format_table(aggregate))
  console.say(f'wrote {workdir / "results.json"}')
  return aggregate
