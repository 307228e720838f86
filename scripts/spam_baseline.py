"""Classical baselines for the spam experiment, on exactly the models' splits: TF-IDF + linear.

The config's data fields (dedup, split seed, split_per_seed, num_seeds, limit) pick the splits
through the experiment's own `seeds.run_configs`, `input_pipeline.load_corpus` and
`input_pipeline.prepare_split`, so seed k here is scored on the very test set the RNN and LSTM of
seed k are. Each classifier's C is chosen by 5-fold cross-validation (F1) on the training and
validation parts only; the test part is used once.

Run:      python scripts/spam_baseline.py --config=configs/spam_lstm.py \\
              --config.num_seeds=5 [--noconfig.data.dedup] [--out=runs/spam_baseline.json]
Expect:   linear SVM ~98.7% accuracy deduplicated, ~99.0% with duplicates (mean of 5 seeds), in
          1.5-2 minutes for 5 seeds on a 2-core CPU; the table goes to stdout, the per-seed
          metrics to --out.
"""

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
from aml2_jax.runtime.metrics_logging import write_json

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/spam_lstm.py',
                                          'A spam config: its data fields pick the splits.',
                                          lock_config=True)
_OUT = flags.DEFINE_string('out', '', 'Where to write the per-seed and mean results (JSON).')

_C_GRID = (0.1, 1.0, 10.0)  # Inverse regularisation strengths tried by cross-validation.


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
                        cv=StratifiedKFold(5, shuffle=True, random_state=seed))
  search.fit(train_texts, train_labels)
  if kind == 'proba':
    scores, threshold = search.predict_proba(test_texts)[:, 1], 0.5
  else:
    scores, threshold = search.decision_function(test_texts), 0.0
  metrics = binary_metrics.binary_metrics(test_labels, scores, threshold=threshold)
  return {**{f'test_{k}': v for k, v in metrics.items()}, 'C': search.best_params_[f'{step}__C']}


def _all_ham(test_labels) -> dict:
  metrics = binary_metrics.binary_metrics(test_labels, np.zeros(len(test_labels)))
  return {f'test_{k}': v for k, v in metrics.items()}


def run_seed(run_config) -> dict:
  """Every baseline's test metrics on the split of one seed's config."""
  corpus = input_pipeline.load_corpus(run_config)
  index = input_pipeline.prepare_split(corpus, run_config).index
  train_idx, test_idx = np.concatenate([index['train'], index['val']]), index['test']
  texts = np.array(corpus.texts, dtype=object)
  train = (texts[train_idx], corpus.labels[train_idx])
  test = (texts[test_idx], corpus.labels[test_idx])
  results = {'all_ham': _all_ham(test[1])}
  for name, (estimator, kind) in _classifiers(run_config.seed).items():
    start = time.perf_counter()
    results[name] = _fit_and_score(estimator, kind, run_config.seed, *train, *test)
    results[name]['fit_wall_s'] = round(time.perf_counter() - start, 1)
  return results


def _mean_std(per_seed: list[dict]) -> dict:
  out = {}
  for name in ('test_accuracy', 'test_precision', 'test_recall', 'test_f1', 'test_mcc',
               'test_ham_fpr', 'test_roc_auc', 'test_pr_auc'):
    values = np.array([r[name] for r in per_seed], np.float64)
    out[name] = float(values.mean())
    out[f'{name}_std'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  runs = seeds.run_configs(config)
  per_seed = {run.seed: run_seed(run) for run in runs}
  models = list(next(iter(per_seed.values())))
  summary = {'dedup': config.data.dedup, 'seeds': list(per_seed),
             'split_seeds': [run.data.split_seed for run in runs]}
  print(f'baselines: {len(runs)} seed(s), dedup={config.data.dedup}, '
        f'split seeds {summary["split_seeds"]}')
  print(f'{"model":<18}{"accuracy":>18}{"precision":>18}{"recall":>18}{"f1":>18}{"mcc":>18}')
  for model in models:
    results = [r[model] for r in per_seed.values()]
    summary[model] = {**_mean_std(results), 'per_seed': results}
    cells = ''.join(f'{summary[model][f"test_{m}"]:>10.4f} ± {summary[model][f"test_{m}_std"]:.4f}'
                    for m in ('accuracy', 'precision', 'recall', 'f1', 'mcc'))
    print(f'{model:<18}{cells}')
  if _OUT.value:
    Path(_OUT.value).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(_OUT.value), summary)
    print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
