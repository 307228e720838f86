"""Classical baselines for the spam experiment, on exactly the models' splits: TF-IDF + linear.

The config's data fields (dedup, tokenizer_fit, split seed, split_per_seed, num_seeds, limit) pick
the splits through the experiment's own `seeds.run_configs`, `input_pipeline.load_corpus` and
`input_pipeline.prepare_split`, so seed k here is scored on the very test set the RNN and LSTM of
seed k are (deduplicated, the held-out token twins the networks cannot see are dropped too). Each
classifier's C is chosen by 5-fold cross-validation (F1) on the training and validation parts
only; the test part is used once. With `--config.data.cv_folds=5`, seed k is the networks' fold
k: fitted on that fold's training and validation parts (the non-test part, but for the message
a fold may leave out) and scored on the one test part the folds share.

Run:      python scripts/spam_baseline.py --config=configs/spam_lstm.py --config.num_seeds=5 \\
              --workdir=runs/spam/tfidf_dedup      (the study's protocol: add --noconfig.data.dedup
              --config.data.tokenizer_fit=all, as the networks' runs do)
Writes:   <workdir>/<model>/ with results.json (mean ± std over seeds in the networks' fields,
          test_accuracy and test_accuracy_std..., and every seed's results), config.json and
          run.json: what `python -m aml2_jax.report publish` copies into results/.
Expect:   linear SVM ~99.0% accuracy and spam F1 ~0.96 under both protocols (mean of 5 seeds),
          in about 4 minutes for 5 seeds on a busy 2-core CPU; the table goes to stdout.
"""

import contextlib
import shutil
import sys
from pathlib import Path
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # Run from anywhere.

# pylint: disable=g-import-not-at-top
from absl import app, flags
from ml_collections import config_flags
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from aml2_jax.spam import input_pipeline, metrics as binary_metrics, seeds
from aml2_jax.runtime import run_record
from aml2_jax.runtime.metrics_logging import write_json

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/spam_lstm.py',
                                          'A spam config: its data fields pick the splits.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', '', 'Where each model writes <model>/results.json.')

_C_GRID = (0.1, 1.0, 10.0)  # Inverse regularisation strengths tried by cross-validation.
_FOLDS = 5
_AGGREGATED = tuple(f'test_{name}' for name in binary_metrics.SCALAR_NAMES) + ('fit_wall_s',)


def _vectorizer() -> TfidfVectorizer:
  # Word unigrams and bigrams, sublinear tf: the textbook setup for short-message spam.
  return TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True)


def _classifiers(seed: int) -> dict:
  """Name -> (estimator, how to score it): probabilities at 0.5 or SVM margins at 0."""
  return {
      'tfidf_logreg': (LogisticRegression(solver='liblinear'), 'proba'),  # Fast on sparse input.
      'tfidf_linear_svm': (LinearSVC(random_state=seed), 'margin'),
  }


def _fit_and_score(estimator, kind: str, seed: int, train_texts, train_labels, test_texts,
                   test_labels) -> dict:
  pipeline = make_pipeline(_vectorizer(), estimator)
  step = pipeline.steps[-1][0]
  search = GridSearchCV(pipeline, {f'{step}__C': _C_GRID}, scoring='f1',
                        cv=StratifiedKFold(_FOLDS, shuffle=True, random_state=seed))
  search.fit(train_texts, train_labels)
  if kind == 'proba':
    scores, threshold = search.predict_proba(test_texts)[:, 1], 0.5
  else:
    scores, threshold = search.decision_function(test_texts), 0.0
  metrics = binary_metrics.binary_metrics(test_labels, scores, threshold=threshold)
  return {**{f'test_{k}': v for k, v in metrics.items()},
          'C': search.best_params_[f'{step}__C'], 'cv_f1': float(search.best_score_)}


def _all_ham(test_labels) -> dict:
  metrics = binary_metrics.binary_metrics(test_labels, np.zeros(len(test_labels)))
  return {f'test_{k}': v for k, v in metrics.items()}


def run_seed(run_config) -> dict:
  """Every baseline's test metrics, with the split's sizes, on the split of one seed's config."""
  corpus = input_pipeline.load_corpus(run_config)
  index = input_pipeline.prepare_split(corpus, run_config).index
  train_idx, test_idx = np.concatenate([index['train'], index['val']]), index['test']
  texts = np.array(corpus.texts, dtype=object)
  train = (texts[train_idx], corpus.labels[train_idx])
  test = (texts[test_idx], corpus.labels[test_idx])
  split = {'seed': run_config.seed, 'split_seed': run_config.data.split_seed,
           **{f'num_{part}': len(index[part]) for part in input_pipeline.PARTS},
           'num_held_out_token_twins_dropped': len(index['dropped'])}
  results = {'all_ham': {**split, **_all_ham(test[1])}}
  for name, (estimator, kind) in _classifiers(run_config.seed).items():
    start = time.perf_counter()
    results[name] = {**split, **_fit_and_score(estimator, kind, run_config.seed, *train, *test)}
    results[name]['fit_wall_s'] = round(time.perf_counter() - start, 1)
  return results


def summarize(config, model: str, per_seed: dict[int, dict]) -> dict:
  """Mean and std (ddof=1; 0 for one seed) over seeds, as the networks' results.json has them."""
  runs = list(per_seed.values())
  summary = {'model': model, 'num_seeds': len(runs), 'seeds': list(per_seed),
             'split_seeds': [r['split_seed'] for r in runs], 'dedup': config.data.dedup,
             'split_protocol': input_pipeline.protocol(config),
             'tokenizer_fit': config.data.tokenizer_fit, 'fit_on': 'train and val parts',
             'selection': f'C from {list(_C_GRID)} by {_FOLDS}-fold cross-validation (F1) '
                          'on the train and val parts', 'C': [r.get('C') for r in runs]}
  for name in _AGGREGATED:
    values = np.array([r[name] for r in runs if name in r], np.float64)
    if len(values):
      summary[name] = float(values.mean())
      summary[f'{name}_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  summary['test_confusion_matrix'] = np.sum([r['test_confusion_matrix'] for r in runs],
                                            axis=0).tolist()
  summary['per_seed'] = {str(seed): r for seed, r in per_seed.items()}
  return summary


def _print_table(config, summaries: dict[str, dict]) -> None:
  first = next(iter(summaries.values()))
  print(f'baselines: {first["num_seeds"]} seed(s), dedup={config.data.dedup}, '
        f'split seeds {first["split_seeds"]}')
  names = ('accuracy', 'precision', 'recall', 'f1', 'mcc')
  print(f'{"model":<18}' + ''.join(f'{n:>18}' for n in names))
  for model, s in summaries.items():
    print(f'{model:<18}' + ''.join(f'{s[f"test_{n}"]:>10.4f} ± {s[f"test_{n}_std"]:.4f}'
                                   for n in names))


def _write(config, workdir: Path, summaries: dict[str, dict]) -> None:
  """<workdir>/<model>/: results.json, config.json and the invocation's run.json."""
  for model, summary in summaries.items():
    (workdir / model).mkdir(parents=True, exist_ok=True)
    write_json(workdir / model / 'results.json', summary)
    (workdir / model / 'config.json').write_text(config.to_json(indent=2) + '\n', 'utf-8')
    print(f'wrote {workdir / model}/')


def main(argv):
  del argv
  config = _CONFIG.value
  workdir = Path(_WORKDIR.value) if _WORKDIR.value else None
  if workdir:
    workdir.mkdir(parents=True, exist_ok=True)
  with run_record.RunRecorder(workdir, mode='baseline') if workdir else contextlib.nullcontext():
    per_seed = {run.seed: run_seed(run) for run in seeds.run_configs(config)}
    models = list(next(iter(per_seed.values())))
    summaries = {m: summarize(config, m, {s: r[m] for s, r in per_seed.items()}) for m in models}
    _print_table(config, summaries)
    if workdir:
      _write(config, workdir, summaries)
  for model in summaries if workdir else ():  # The record is complete once the block is left.
    shutil.copyfile(workdir / run_record.RUN_FILE, workdir / model / run_record.RUN_FILE)


if __name__ == '__main__':
  app.run(main)
