"""Formulas for how good generated images are: FID (in the judge's feature space, so comparable
within this project only, never with Inception-FID figures), accuracies, class entropy."""

import warnings

import numpy as np
import scipy.linalg


# Largest imaginary part allowed on the diagonal of (S_a S_b)^1/2 before it is discarded (the
# reference FID implementation's tolerance). The product of two covariances has real eigenvalues
# >= 0, so its root is real up to rounding; more than this is a numerical failure, not noise.
IMAGINARY_TOLERANCE = 1e-3


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID between two feature sets [num, dim]: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
  a, b = features_a.astype(np.float64), features_b.astype(np.float64)
  return frechet_distance_of_moments(a.mean(0), np.cov(a, rowvar=False),
                                     b.mean(0), np.cov(b, rowvar=False))


def frechet_distance_of_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray,
                                cov_b: np.ndarray) -> float:
  """The Fréchet distance of Gaussians N(mu_a [dim], cov_a [dim, dim]) and N(mu_b, cov_b); a
  ValueError when the matrix root is not real (see `IMAGINARY_TOLERANCE`)."""
  covmean = _matrix_sqrt(cov_a @ cov_b)
  if not np.isfinite(covmean).all():  # Near-singular product: regularise as the reference FID.
    offset = np.eye(len(cov_a)) * 1e-6
    covmean = _matrix_sqrt((cov_a + offset) @ (cov_b + offset))
  if np.iscomplexobj(covmean):
    imaginary = np.abs(np.diagonal(covmean).imag).max()
    if imaginary > IMAGINARY_TOLERANCE:
      raise ValueError(f'the matrix root in the Fréchet distance has an imaginary part of '
                       f'{imaginary:.3g} on its diagonal: the covariances are not positive '
                       'semi-definite or the product is too ill-conditioned.')
    covmean = covmean.real
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
               - 2 * np.trace(covmean))


def _matrix_sqrt(matrix: np.ndarray) -> np.ndarray:
  with warnings.catch_warnings():  # Dead ReLU features make the product singular: handled above.
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    # No `disp`: deprecated in SciPy 1.16, removed in 1.18; without it only the root is returned.
    return scipy.linalg.sqrtm(matrix)


def conditional_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
  """Share of images the classifier assigns to the label they were generated for."""
  return float(np.mean(predicted == labels))


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray,
                       num_classes: int = 10) -> np.ndarray:
  """[num_classes] share of each class's images classified as that class (NaN if absent)."""
  return np.array([np.mean(predicted[labels == c] == c) if np.any(labels == c) else np.nan
                   for c in range(num_classes)])


def class_entropy(predicted: np.ndarray, num_classes: int = 10) -> float:
  """Entropy (nats) of the predicted-class histogram: ln(10) when all classes appear equally."""
  counts = np.bincount(predicted, minlength=num_classes).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())
