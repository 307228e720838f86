"""Metrics of a binary classifier on the host (numpy), positive class = 1 (spam).

Accuracy alone says little on an imbalanced set (all-ham scores 86.6% on the SMS corpus), so
`binary_metrics` also gives precision, recall, F1 and MCC of the positive class, the false-positive
rate of the negative class (ham wrongly flagged), and the threshold-free ROC-AUC and PR-AUC.
`*_weighted` are scikit-learn's "weighted avg" row of `classification_report`: each class's
precision, recall and F1 averaged with the class counts as weights. That row is dominated by ham
(87% of messages), so it says little about spam: a "98% precision" read off that report is not
the spam class's. Undefined ratios (e.g. precision with no positive predictions) are 0, as
scikit-learn's `zero_division=0`; the AUCs are NaN when the labels hold only one class.
"""

import numpy as np
from sklearn import metrics as sk_metrics

SCALAR_NAMES = ('accuracy', 'precision', 'recall', 'f1', 'mcc', 'ham_fpr', 'roc_auc', 'pr_auc',
                'precision_weighted', 'recall_weighted', 'f1_weighted')


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
  """(tn, fp, fn, tp) of 0/1 `labels` and `predicted`, both [num]."""
  labels, predicted = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
  return (int(np.sum(~labels & ~predicted)), int(np.sum(~labels & predicted)),
          int(np.sum(labels & ~predicted)), int(np.sum(labels & predicted)))


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
  """Precision, recall and F1 of each class, averaged weighted by true class counts.

  scikit-learn's `classification_report` "weighted avg" (and `precision_score(...,
  average='weighted', zero_division=0)`): ham's precision is tn / (tn + fn), its recall
  tn / (tn + fp); the weights are the class counts tn + fp (ham) and fn + tp (spam).
  """
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
  """All metrics of scores [num] against 0/1 labels [num]; positive when `score > threshold`.

  Args:
    labels: 0/1 ints [num]; 1 is the positive (spam) class.
    scores: [num], higher = more likely positive: probabilities, logits or SVM margins.
    threshold: the decision threshold on `scores` (0.5 for probabilities, 0 for logits).

  Returns:
    The floats of `SCALAR_NAMES` and 'confusion_matrix' [[tn, fp], [fn, tp]] (rows: true
    ham, spam; columns: predicted ham, spam; scikit-learn's layout).
  """
  labels, scores = np.asarray(labels).astype(np.int64), np.asarray(scores, np.float64)
  if labels.shape != scores.shape or labels.ndim != 1:
    raise ValueError(f'labels {labels.shape} and scores {scores.shape} must be equal 1-D shapes')
  tn, fp, fn, tp = confusion_counts(labels, scores > threshold)
  precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
  roc_auc, pr_auc = _aucs(labels, scores)
  return {
      'accuracy': _ratio(tp + tn, len(labels)),
      'precision': precision,
      'recall': recall,
      'f1': _f1(precision, recall),
      'mcc': _mcc(tn, fp, fn, tp),
      'ham_fpr': _ratio(fp, fp + tn),
      'roc_auc': roc_auc,
      'pr_auc': pr_auc,
      **weighted_averages(tn, fp, fn, tp),
      'confusion_matrix': [[tn, fp], [fn, tp]],
  }


def bce_from_logits(labels: np.ndarray, logits: np.ndarray) -> float:
  """Mean binary cross-entropy of logits [num] against 0/1 labels [num], computed stably."""
  labels, logits = np.asarray(labels, np.float64), np.asarray(logits, np.float64)
  return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
