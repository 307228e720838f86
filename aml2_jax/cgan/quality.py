"""How good the generator's images are, measured by an independent classifier (the judge).

For images generated for known labels: conditional accuracy (the share the judge assigns to their
label), per-class accuracy, class-histogram entropy, FID in the judge's feature space, and CAS
(the judge's architecture trained only on generated images, tested on real ones).
"""

import shutil
from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax import fmnist_classifier
from aml2_jax.cgan import generate, metrics
from aml2_jax.cgan.models import NUM_CLASSES
from aml2_jax.datasets import fashion_mnist
from aml2_jax.fmnist_classifier import train as classifier_lib
from aml2_jax.training.config import load_config
from aml2_jax.training.metrics_logging import write_json
from aml2_jax.training.param_summary import count_params

_PRINTED = ('conditional_accuracy', 'classifier_test_accuracy', 'fid', 'fid_train_vs_test',
            'class_entropy', 'cas_accuracy')


class Judge:
  """The trained Fashion-MNIST classifier: restored from its workdir, or trained there first."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path):
    self.config = load_config('fmnist_classifier', config.eval.classifier_variant)
    self.config.data.dir = config.data.dir
    self.workdir = Path(config.eval.classifier_workdir or workdir.parent / 'fmnist_classifier')
    self.workdir = self.workdir.absolute()
    if not (self.workdir / 'results.json').exists():  # Written when its training completes.
      console.say(f'training the judging classifier in {self.workdir} (once; reused afterwards)')
      self.workdir.mkdir(parents=True, exist_ok=True)
      fmnist_classifier.train_and_evaluate(self.config, self.workdir)
    self.model = classifier_lib.make_model(self.config)
    self.params = classifier_lib.restore_params(self.config, self.workdir)

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [num, 28, 28] -> (logits [num, 10], features [num, feature_dim])."""
    logits, features = classifier_lib.predict_fn(self.model)(self.params, images)
    return logits, features


def quality_metrics(judge: Judge, images: np.ndarray, labels: np.ndarray,
                    data: fashion_mnist.FashionMnist, seed: int) -> dict:
  """How the judge sees `images` [num, 28, 28] uint8 made for `labels` [num], against real data."""
  logits, features = judge(images)
  test_logits, test_features = judge(data.test_images)
  subset = np.random.default_rng(seed).permutation(len(data.train_images))[:len(data.test_images)]
  _, train_features = judge(data.train_images[subset])
  predicted = logits.argmax(-1)
  per_class = metrics.per_class_accuracy(predicted, labels)
  return {
      'conditional_accuracy': metrics.conditional_accuracy(predicted, labels),
      'classifier_test_accuracy': metrics.conditional_accuracy(test_logits.argmax(-1),
                                                               data.test_labels),
      'fid': metrics.frechet_distance(features, test_features),
      'fid_train_vs_test': metrics.frechet_distance(train_features, test_features),
      'class_entropy': metrics.class_entropy(predicted),
      'per_class_accuracy': dict(zip(fashion_mnist.CLASS_NAMES, per_class.round(4).tolist())),
  }


def cas_accuracy(config, judge: Judge, workdir: Path, g_params,
                 data: fashion_mnist.FashionMnist) -> float:
  """Classification accuracy score: the judge's architecture trained only on generated images."""
  labels = generate.class_grid_labels(range(NUM_CLASSES), config.eval.cas_num_per_class)
  images = generate.generate(config, g_params, labels, seed=config.seed + 2)
  cas_dir = workdir / 'cas_classifier'
  shutil.rmtree(cas_dir, ignore_errors=True)  # Its checkpoints belong to an older generator.
  cas_dir.mkdir()
  meta = classifier_lib.model_meta(judge.config, 'cas_classifier')
  state = classifier_lib.train_classifier(judge.config, cas_dir, images, labels,
                                          data.test_images, data.test_labels, meta)
  return classifier_lib.accuracy(judge.model, state.params, data.test_images, data.test_labels)


def evaluate_and_write(config, workdir: Path, g_params, data: fashion_mnist.FashionMnist,
                       extra: dict) -> dict:
  """Conditional accuracy, judge-space FID, class coverage and CAS into `results.json`."""
  judge = Judge(config, workdir)
  labels = generate.class_grid_labels(range(NUM_CLASSES), config.eval.num_per_class)
  images = generate.generate(config, g_params, labels, seed=config.seed + 1)
  results = {
      **extra,
      **quality_metrics(judge, images, labels, data, config.seed),
      'cas_accuracy': cas_accuracy(config, judge, workdir, g_params, data),
      'num_params_generator': count_params(g_params),
      'fid_note': "FID in the project's Fashion-MNIST classifier feature space, not Inception.",
  }
  write_json(workdir / 'results.json', results)
  _print_results(results)
  return results


def _print_results(results: dict) -> None:
  lines = [f'{key:>26}: {results[key]:.4f}' for key in _PRINTED]
  lines.append(f'{"class":>26}  conditional accuracy')
  lines += [f'{name:>26}  {accuracy:.3f}' for name, accuracy in results['per_class_accuracy'].items()]
  console.say('\n'.join(lines))
