"""How good the generator's images are, measured by an independent classifier (the judge).

For images generated for known labels: conditional accuracy (the share the judge assigns to their
label), per-class accuracy, class-histogram entropy, FID in the judge's feature space, and CAS
(the judge's architecture trained only on generated images, tested on real ones).

The evaluation survives a kill: its phases (training the judge, scoring, training the CAS
classifier) are resumable, and the same command finishes it without retraining the GAN. The judge
and the CAS classifier train in the shared loop, so they resume from their checkpoints; the scores
and the CAS accuracy go into `PROGRESS_FILE` (atomically) as soon as they exist, stamped with a
digest of the generator, the judge and the evaluation config, and a later run reuses them only for
that same digest. The file is removed once `results.json` is written, so a fresh `--mode=eval`
computes everything again.
"""

import hashlib
import json
import shutil
from pathlib import Path

import jax
import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax import fmnist_classifier
from aml2_jax.cgan import generate, metrics
from aml2_jax.cgan.models import NUM_CLASSES
from aml2_jax.datasets import fashion_mnist
from aml2_jax.fmnist_classifier import train as classifier_lib
from aml2_jax.runtime import faults, storage
from aml2_jax.training.config import load_config
from aml2_jax.runtime.metrics_logging import write_json
from aml2_jax.training.param_summary import count_params

PROGRESS_FILE = 'evaluation_progress.json'  # Phases done by an evaluation that was cut short.
CAS_STAMP = 'generator.json'  # In cas_classifier/: the digest its checkpoints were trained for.

_PRINTED = ('conditional_accuracy', 'classifier_test_accuracy', 'fid', 'fid_train_vs_test',
            'class_entropy', 'cas_accuracy')


class Judge:
  """The trained Fashion-MNIST classifier: restored from its workdir, or trained there first."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path):
    self.config = load_config('fmnist_classifier', config.eval.classifier_variant)
    self.config.data.dir = config.data.dir
    self.config.num_devices = config.num_devices  # A multi-process run trains it on all of them.
    self.workdir = Path(config.eval.classifier_workdir or workdir.parent / 'fmnist_classifier')
    self.workdir = self.workdir.absolute()
    if not (self.workdir / 'results.json').exists():  # Written when its training completes.
      console.say(f'training the judging classifier in {self.workdir} (once; reused afterwards)')
      with storage.writing(self.workdir, '--config.eval.classifier_workdir'):
        self.workdir.mkdir(parents=True, exist_ok=True)
      fmnist_classifier.train_and_evaluate(self.config, self.workdir)  # Resumes if cut short.
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
                 data: fashion_mnist.FashionMnist, digest: str = '') -> float:
  """Classification accuracy score: the judge's architecture trained only on generated images.

  Resumes the classifier's training when `cas_classifier/` was trained for the same `digest`
  (see `evaluation_digest`); otherwise its checkpoints belong to another generator and go.
  """
  labels = generate.class_grid_labels(range(NUM_CLASSES), config.eval.cas_num_per_class)
  images = generate.generate(config, g_params, labels, seed=config.seed + 2)
  cas_dir = workdir / 'cas_classifier'
  stamp = {'generator_sha256': digest}
  if digest and storage.read_json_object(cas_dir / CAS_STAMP) == stamp:
    console.say(f'resuming the CAS classifier in {cas_dir}')
  else:
    shutil.rmtree(cas_dir, ignore_errors=True)  # Its checkpoints belong to another generator.
    with storage.writing(cas_dir, '--workdir'):
      cas_dir.mkdir()
    write_json(cas_dir / CAS_STAMP, stamp)
  meta = classifier_lib.model_meta(judge.config, 'cas_classifier')
  state = classifier_lib.train_classifier(judge.config, cas_dir, images, labels,
                                          data.test_images, data.test_labels, meta)
  return classifier_lib.accuracy(judge.model, state.params, data.test_images, data.test_labels)


def evaluation_digest(config, g_params, judge: Judge) -> str:
  """SHA-256 of what the evaluation's numbers depend on: the generator's and the judge's
  parameters and the config fields that shape the evaluation."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves((g_params, judge.params)):
    digest.update(np.asarray(leaf).tobytes())
  fields = {'seed': config.seed, 'model': config.model.to_dict(),
            'eval': {k: v for k, v in config.eval.to_dict().items() if k != 'after_training'}}
  digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
  return digest.hexdigest()


def evaluate_and_write(config, workdir: Path, g_params, data: fashion_mnist.FashionMnist,
                       extra: dict) -> dict:
  """Conditional accuracy, judge-space FID, class coverage and CAS into `results.json`.

  Each phase's result is kept in `PROGRESS_FILE` until the results are written, so a run cut
  short resumes after the last finished phase (see the module docstring).
  """
  judge = Judge(config, workdir)
  faults.crash_point('cgan-eval:judge-ready')
  digest = evaluation_digest(config, g_params, judge)
  progress_path = workdir / PROGRESS_FILE
  progress = storage.read_json_object(progress_path)
  if progress.get('digest') != digest:
    progress = {'digest': digest}
  else:
    console.say(f'resuming the evaluation: {", ".join(k for k in progress if k != "digest")} '
                f'from {progress_path}')
  if 'quality' not in progress:
    labels = generate.class_grid_labels(range(NUM_CLASSES), config.eval.num_per_class)
    images = generate.generate(config, g_params, labels, seed=config.seed + 1)
    progress['quality'] = quality_metrics(judge, images, labels, data, config.seed)
    write_json(progress_path, progress)
  faults.crash_point('cgan-eval:scored')
  if 'cas_accuracy' not in progress:
    progress['cas_accuracy'] = cas_accuracy(config, judge, workdir, g_params, data, digest)
    write_json(progress_path, progress)
  faults.crash_point('cgan-eval:cas-done')
  results = {
      **extra,
      **progress['quality'],
      'cas_accuracy': progress['cas_accuracy'],
      'num_params_generator': count_params(g_params),
      'fid_note': "FID in the project's Fashion-MNIST classifier feature space, not Inception.",
  }
  write_json(workdir / 'results.json', results)
  with storage.writing(progress_path, '--workdir'):
    progress_path.unlink(missing_ok=True)
  _print_results(results)
  return results


def _print_results(results: dict) -> None:
  lines = [f'{key:>26}: {results[key]:.4f}' for key in _PRINTED]
  lines.append(f'{"class":>26}  conditional accuracy')
  lines += [f'{name:>26}  {accuracy:.3f}' for name, accuracy in results['per_class_accuracy'].items()]
  console.say('\n'.join(lines))
