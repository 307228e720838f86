"""Tests for aml2_jax.binary_metrics against hand counts and scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as sk

from aml2_jax.spam import metrics as binary_metrics


def test_hand_counted_example():
  labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
  scores = np.array([.9, .8, .7, .2, .6, .4, .3, .1, .1, .05])  # tp 3, fn 1, fp 1, tn 5.
  m = binary_metrics.binary_metrics(labels, scores)
  assert m['confusion_matrix'] == [[5, 1], [1, 3]]
  assert m['accuracy'] == pytest.approx(0.8)
  assert m['precision'] == pytest.approx(0.75) and m['recall'] == pytest.approx(0.75)
  assert m['f1'] == pytest.approx(0.75)
  assert m['ham_fpr'] == pytest.approx(1 / 6)
  assert m['mcc'] == pytest.approx((3 * 5 - 1 * 1) / np.sqrt(4 * 4 * 6 * 6))
  assert m['roc_auc'] == pytest.approx(21 / 24)  # 21 of the 24 spam-ham pairs ranked right.


def test_agrees_with_sklearn_on_random_data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 500)
  scores = np.clip(labels * 0.3 + rng.normal(0.35, 0.25, 500), 0, 1)
  m = binary_metrics.binary_metrics(labels, scores)
  predicted = scores > 0.5
  assert m['accuracy'] == pytest.approx(sk.accuracy_score(labels, predicted))
  assert m['precision'] == pytest.approx(sk.precision_score(labels, predicted))
  assert m['recall'] == pytest.approx(sk.recall_score(labels, predicted))
  assert m['f1'] == pytest.approx(sk.f1_score(labels, predicted))
  assert m['mcc'] == pytest.approx(sk.matthews_corrcoef(labels, predicted))
  assert m['confusion_matrix'] == sk.confusion_matrix(labels, predicted).tolist()
  assert m['pr_auc'] == pytest.approx(sk.average_precision_score(labels, scores))


def test_threshold_applies_to_any_score_scale():
  labels = np.array([0, 1, 1])
  logits = np.array([-2.0, 0.5, -0.1])
  assert binary_metrics.binary_metrics(labels, logits, threshold=0.0)['confusion_matrix'] == [
      [1, 0], [1, 1]]


def test_all_ham_predictions_and_single_class_labels():
  labels = np.array([0] * 13 + [1] * 2)
  m = binary_metrics.binary_metrics(labels, np.zeros(15))
  assert m['accuracy'] == pytest.approx(13 / 15)
  assert (m['precision'], m['recall'], m['f1'], m['mcc'], m['ham_fpr']) == (0, 0, 0, 0, 0)
  m = binary_metrics.binary_metrics(np.zeros(4), np.array([.1, .7, .2, .3]))
  assert np.isnan(m['roc_auc']) and np.isnan(m['pr_auc']) and m['ham_fpr'] == 0.25


def test_bce_from_logits_is_stable_and_correct():
  labels, logits = np.array([1, 0, 1]), np.array([2.0, -1.0, 800.0])
  expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), 0.0])
  assert binary_metrics.bce_from_logits(labels, logits) == pytest.approx(expected)


def test_shape_mismatch_is_refused():
  with pytest.raises(ValueError, match='equal 1-D shapes'):
    binary_metrics.binary_metrics(np.zeros(3), np.zeros(4))
