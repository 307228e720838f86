"""Numbers for how good generated images are, judged by an independent classifier.

FID here is computed in the project's own Fashion-MNIST classifier's feature space: it is
comparable across runs of this project only, never with Inception-FID figures.
"""

import warnings

import numpy as np
import scipy.linalg


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID between two feature sets [num, dim]: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
  a, b = features_a.astype(np.float64), features_b.astype(np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():  # Dead ReLU features make the product singular: handled below.
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean, _ = scipy.linalg.sqrtm(cov_a @ cov_b, disp=False)
  if not np.isfinite(covmean).all():  # Near-singular product: regularise, as the reference FID does.
    offset = np.eye(len(cov_a)) * 1e-6
    covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
  covmean = covmean.real
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def conditional_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
  """Share of images the classifier assigns to the label they were generated for."""
  return float(np.mean(predicted == labels))


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
  """[num_classes] share of each class's images classified as that class (NaN if absent)."""
  return np.array([np.mean(predicted[labels == c] == c) if np.any(labels == c) else np.nan
                   for c in range(num_classes)])


def class_entropy(predicted: np.ndarray, num_classes: int = 10) -> float:
  """Entropy (nats) of the predicted-class histogram: ln(10) = 2.303 when all classes appear equally."""
  counts = np.bincount(predicted, minlength=num_classes).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())
