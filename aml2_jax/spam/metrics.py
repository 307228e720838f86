"""Metrics of a binary classifier on the host (numpy), positive class = 1 (spam).

Why each is there, and what the `*_weighted` ones are not: docs/spam.md#results. Undefined
ratios are 0 (scikit-learn's `zero_division=0`); the AUCs are NaN with one class in the labels.
"""

import numpy as np
from sklearn import metrics as sk_metrics

SCALAR_NAMES = ('accuracy', 'precision', 'recall', 'f1', 'mcc', 'ham_fpr', 'roc_auc', 'pr_auc',
                'precision_weighted', 'recall_weighted', 'f1_weighted')


def _ratio(num: float, den: float) -> float:
  return float(num / den) if den else 0.0


def _mcc(tn: int, fp: int, fn: int, tp: int) -> float:
  """Matthews correlation; 0 when a row or column of the confusion matrix is empty."""
  den = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return _ratio(tp * tn - fp * fn, den)


def _aucs(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
  """(ROC-AUC, PR-AUC); PR-AUC is average precision (a step sum, not the optimistic trapezoid)."""
  if len(np.unique(labels)) < 2:
    return float('nan'), float('nan')
  return (float(sk_metrics.roc_auc_score(labels, scores)),
          float(sk_metrics.average_precision_score(labels, scores)))


def _f1(precision: float, recall: float) -> float:
  return _ratio(2 * precision * recall, precision + recall)


def weighted_averages(tn: int, fp: int, fn: int, tp: int) -> dict[str, float]:
  """scikit-learn's "weighted avg": each class's precision, recall and F1, weighted by its count."""
  per_class = [(_ratio(tn, tn + fn), _ratio(tn, tn + fp)),  # (precision, recall) of ham...
               (_ratio(tp, tp + fp), _ratio(tp, tp + fn))]  # ...and of spam.
  support = np.array([tn + fp, fn + tp], np.float64)
  weights = support / support.sum() if support.sum() else support
  return {
      'precision_weighted': float(sum(w * p for w, (p, _) in zip(weights, per_class))),
      'recall_weighted': float(sum(w * r for w, (_, r) in zip(weights, per_class))),
      'f1_weighted': float(sum(w * _f1(p, r) for w, (p, r) in zip(weights, per_class))),
  }


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
  """The floats of `SCALAR_NAMES` and 'confusion_matrix' [[tn, fp], [fn, tp]] (scikit-learn's
  layout) of scores [num] (higher = spam: probabilities, logits, margins) against 0/1 labels
  [num]; a message is spam when `score > threshold` (0.5 for probabilities, 0 for logits)."""
  labels, scores = np.asarray(labels).astype(np.int64), np.asarray(scores, np.float64)
  if labels.shape != scores.shape or labels.ndim != 1:
    raise ValueError(f'labels {labels.shape} and scores {scores.shape} must be equal 1-D shapes')
  predicted = (scores > threshold).astype(np.int64)
  tn, fp, fn, tp = map(int, sk_metrics.confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
  precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
  roc_auc, pr_auc = _aucs(labels, scores)
  return {'accuracy': _ratio(tp + tn, len(labels)), 'precision': precision, 'recall': recall,
          'f1': _f1(precision, recall), 'mcc': _mcc(tn, fp, fn, tp),
          'ham_fpr': _ratio(fp, fp + tn), 'roc_auc': roc_auc, 'pr_auc': pr_auc,
          **weighted_averages(tn, fp, fn, tp), 'confusion_matrix': [[tn, fp], [fn, tp]]}


def bce_from_logits(labels: np.ndarray, logits: np.ndarray) -> float:
  """Mean binary cross-entropy of logits [num] against 0/1 labels [num], computed stably."""
  labels, logits = np.asarray(labels, np.float64), np.asarray(logits, np.float64)
  return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
