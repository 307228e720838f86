"""Several seeds of the spam classifier: one config and directory per seed, trained one after
another or side by side in one vmapped program (`config.seeds_in_one_program`), and the mean ±
std over seeds (docs/spam.md#several-seeds)."""

import contextlib
import functools
import time
from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax.datasets import sms
from aml2_jax.spam import metrics, train as train_lib
from aml2_jax.spam.input_pipeline import SpamSplit, prepare_split
from aml2_jax.spam.models import make_model, spam_probability
from aml2_jax.training import loop, seed_batch
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.runtime.metrics_logging import MetricLogger, write_json
from aml2_jax.runtime.workdir import WorkdirLock

AGGREGATED = tuple(f'test_{name}' for name in ('loss',) + metrics.SCALAR_NAMES) + (
    'train_wall_s',)
CV_AGGREGATED = ('val_accuracy', 'val_loss')  # With folds: the cross-validation estimates.


def run_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """One config per seed: seed `config.seed + k` and split seed + k with `split_per_seed`, or,
  with `data.cv_folds`, one split whose fold `cv_fold + k` seed k validates on."""
  runs = []
  for k in range(config.num_seeds):
    run = config.copy_and_resolve_references()
    run.seed = config.seed + k
    run.num_seeds = 1
    if config.data.cv_folds:
      run.data.cv_fold = config.data.cv_fold + k
    elif config.data.split_per_seed:
      run.data.split_seed = config.data.split_seed + k
    runs.append(run)
  return runs


def seed_dir(workdir: Path, seed: int) -> Path:
  return Path(workdir) / f'seed_{seed}'


def train_seeds(config: ml_collections.ConfigDict, workdir: Path,
                corpus: sms.SmsSpam) -> dict[int, dict]:
  """Trains (or resumes) every seed: in one program when the config asks and the splits allow,
  else one after another. Returns each seed's results."""
  runs = run_configs(config)
  if config.num_seeds > 1 and config.seeds_in_one_program:
    splits = [prepare_split(corpus, run) for run in runs]
    sizes = [len(split.train_labels) for split in splits]
    if len(set(sizes)) == 1:
      return train_in_one_program(runs, workdir, corpus, splits)
    console.warn(f'note: the seeds\' training parts differ in size ({sizes}); they train one '
                 'after another instead of in one program.')
  return {run.seed: train_lib.train_run(run, seed_dir(workdir, run.seed), corpus) for run in runs}


def train_in_one_program(runs: list[ml_collections.ConfigDict], workdir: Path,
                         corpus: sms.SmsSpam, splits: list[SpamSplit]) -> dict[int, dict]:
  """Trains the seeds of `runs` (`run_configs`; `splits` of one training size) side by side."""
  dirs = [seed_dir(workdir, run.seed) for run in runs]
  with contextlib.ExitStack() as stack:
    prepared = []
    for run, run_dir, split in zip(runs, dirs, splits):
      run_dir.mkdir(parents=True, exist_ok=True)
      stack.enter_context(WorkdirLock(run_dir))
      prepared.append(train_lib.prepare_run(run, run_dir, corpus, split))
    tasks, resumed_from = zip(*prepared)
    task = seed_batch.stack_tasks(tasks, [run.seed for run in runs])
    hooks = loop.EpochHooks(evaluate=functools.partial(_epoch_metrics, runs, splits),
                            console_metrics=train_lib.EPOCH_LINE)
    start = time.perf_counter()
    ckpt = seed_batch.SeedCheckpointers(
        [Checkpointer(d / 'checkpoints', runs[0].keep_checkpoints, train_lib.BEST_METRIC)
         for d in dirs], Path(workdir) / 'seed_*' / 'checkpoints')
    logger = seed_batch.SeedLoggers([MetricLogger(d) for d in dirs])
    try:
      state = loop.Trainer(task, runs[0], ckpt, logger, hooks).run()
    finally:
      logger.close()
      ckpt.close()
    # The program's wall time, shared out: the summary's mean is then a seed's cost.
    wall_s = (time.perf_counter() - start) / len(runs)
    results = {}
    for k, (run, run_dir, split) in enumerate(zip(runs, dirs, splits)):
      extra = {'train_wall_s': round(wall_s, 1), 'resumed_from_step': resumed_from[k],
               'trained_in_one_program_with_seeds': [r.seed for r in runs]}
      results[run.seed] = train_lib.finish_run(run, run_dir, split,
                                               seed_batch.take(state.params, k),
                                               loop.first_step(state), extra)
    return results


def _epoch_metrics(runs: list[ml_collections.ConfigDict], splits: list[SpamSplit],
                   state) -> dict[str, np.ndarray]:
  """Every seed's `train.epoch_metrics`, as arrays [seeds]."""
  per_seed = [train_lib.epoch_metrics(run, split, seed_batch.take(state, k))
              for k, (run, split) in enumerate(zip(runs, splits))]
  return {name: np.array([m[name] for m in per_seed]) for name in per_seed[0]}


def summarize(config: ml_collections.ConfigDict, per_seed: dict[int, dict]) -> dict:
  """Mean and std (ddof=1; 0 for one seed) of each metric over seeds, the confusion matrices
  summed, and every seed's results."""
  runs = list(per_seed.values())
  aggregate = {'num_seeds': len(runs), 'seeds': list(per_seed),
               'num_params': runs[0]['num_params'], 'model_cell': config.model.cell,
               'dedup': config.data.dedup, 'split_protocol': runs[0].get('split_protocol'),
               'tokenizer_fit': config.data.tokenizer_fit,
               'val_fraction': config.data.val_fraction,
               'epoch_selection': runs[0].get('epoch_selection'),
               'epochs_used': [r.get('epoch_used') for r in runs],
               'split_seeds': [r['split_seed'] for r in runs]}
  for name in AGGREGATED + (CV_AGGREGATED if config.data.cv_folds else ()):
    values = np.array([r[name] for r in runs if name in r], np.float64)
    if len(values):
      aggregate[name] = float(values.mean())
      aggregate[f'{name}_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  aggregate['test_confusion_matrix'] = np.sum(
      [r['test_confusion_matrix'] for r in runs], axis=0).tolist()
  aggregate['per_seed'] = {str(seed): r for seed, r in per_seed.items()}
  return aggregate


def fold_ensemble(config: ml_collections.ConfigDict, workdir: Path, corpus: sms.SmsSpam) -> dict:
  """`ensemble_test_<metric>`: a cross-validated run's fold models as one classifier, P(spam)
  averaged over them, on the one test part they share (the epoch each uses: `restore_for_eval`)."""
  probs, test_index = [], None
  for run in run_configs(config):
    params = train_lib.restore_for_eval(run, seed_dir(workdir, run.seed), workdir)[0]
    split = prepare_split(corpus, run)
    assert test_index is None or np.array_equal(test_index, split.index['test'])
    test_index = split.index['test']
    (logits,) = train_lib.logits_fn(make_model(run))(params, split.test_ids)
    probs.append(np.asarray(spam_probability(logits), np.float64))
  found = metrics.binary_metrics(split.test_labels, np.mean(probs, axis=0), train_lib.THRESHOLD)
  return {f'ensemble_test_{k}': v for k, v in found.items()}


def format_table(aggregate: dict) -> str:
  """The printed results of `summarize`: one row per metric, mean ± std, then each seed's value."""
  a = aggregate
  lines = [f'spam {a["model_cell"]}: {a["num_seeds"]} seed(s) {a["seeds"]}, dedup={a["dedup"]}, '
           f'tokenizer fit on {a["tokenizer_fit"]}, {a["num_params"]:,} params; test scored at '
           f'epoch(s) {a["epochs_used"]} ({a["epoch_selection"]})',
           f'{"metric":<25}{"mean ± std":>20}   per seed']
  for name in AGGREGATED + CV_AGGREGATED:
    if name in a:
      per_seed = ' '.join(f'{r[name]:.4f}' for r in a['per_seed'].values() if name in r)
      lines.append(f'{name:<25}{a[name]:>11.4f} ± {a[name + "_std"]:.4f}   {per_seed}')
  (tn, fp), (fn, tp) = a['test_confusion_matrix']
  lines.append(f'confusion matrix summed over seeds: ham->ham {tn}, ham->spam {fp}, '
               f'spam->ham {fn}, spam->spam {tp}')
  if 'ensemble_test_accuracy' in a:
    lines.append('the fold models as one ensemble: ' + ', '.join(
        f'{name} {a[f"ensemble_test_{name}"]:.4f}' for name in ('accuracy', 'f1', 'mcc')))
  return '\n'.join(lines)


def write_summary(config: ml_collections.ConfigDict, workdir: Path, per_seed: dict[int, dict],
                  corpus: sms.SmsSpam) -> dict:
  """Writes (and prints) the summary over seeds into `<workdir>/results.json`, with the
  ensemble of the fold models (`fold_ensemble`) of a cross-validated run of every fold."""
  aggregate = summarize(config, per_seed)
  if config.data.cv_folds and config.num_seeds == config.data.cv_folds:
    aggregate.update(fold_ensemble(config, workdir, corpus))
  write_json(workdir / 'results.json', aggregate)
  console.say(format_table(aggregate))
  console.say(f'wrote {workdir / "results.json"}')
  return aggregate
