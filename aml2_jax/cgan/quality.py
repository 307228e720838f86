"""How good the generator's images are, measured by the judge: conditional accuracy, per-class
accuracy, class entropy, judge-space FID and CAS, against the validation slice (`val_*`) and the
test set (`test_*`). The protocol, and how a killed evaluation resumes: docs/cgan.md."""

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from aml2_jax import console, jsonio
from aml2_jax.cgan import generate, metrics
from aml2_jax.cgan.judge import Judge
from aml2_jax.datasets import fashion_mnist
from aml2_jax.fmnist_classifier import train as classifier_lib
from aml2_jax.runtime import faults, storage
from aml2_jax.runtime.metrics_logging import write_json
from aml2_jax.training.param_summary import count_params

PROGRESS_FILE = 'evaluation_progress.json'  # Phases done by an evaluation that was cut short.
CAS_STAMP = 'generator.json'  # In cas_classifier/: the digest its checkpoints were trained for.

_PRINTED = ('val_conditional_accuracy', 'val_fid', 'val_class_entropy', 'val_cas_accuracy',
            'test_conditional_accuracy', 'test_fid', 'test_class_entropy', 'test_cas_accuracy',
            'classifier_test_accuracy', 'fid_train_vs_test')
# Offsets of config.seed for the noise of each generated set, so that no two sets share noise.
SEED_VAL, SEED_CAS, SEED_TEST, SEED_EPOCH = 1, 2, 3, 4


@dataclasses.dataclass(frozen=True)
class Reference:
  """Real images that generated ones are compared with: the validation slice or the test set."""
  name: str  # 'val' or 'test': the prefix of its metrics.
  images: np.ndarray  # uint8 [num, 28, 28].
  labels: np.ndarray  # int [num].
  seed_offset: int  # Of the noise of the images generated to be compared with it.


def references(config, data: fashion_mnist.FashionMnist) -> list[Reference]:
  """The validation slice of the training images (unless `data.val_size` is 0), the test set."""
  refs = []
  if config.data.val_size:
    idx = fashion_mnist.validation_indices(data.train_labels, config.data.val_size,
                                           config.data.split_seed)
    refs.append(Reference('val', data.train_images[idx], data.train_labels[idx], SEED_VAL))
  refs.append(Reference('test', data.test_images, data.test_labels, SEED_TEST))
  return refs


def quality_metrics(judge: Judge, images: np.ndarray, labels: np.ndarray,
                    real_features: np.ndarray) -> dict:
  """How the judge sees `images` [num, 28, 28] uint8 made for `labels` [num], against the judge's
  features of real images [num_real, feature_dim]."""
  logits, features = judge(images)
  predicted = logits.argmax(-1)
  per_class = metrics.per_class_accuracy(predicted, labels)
  return {
      'conditional_accuracy': metrics.conditional_accuracy(predicted, labels),
      'fid': metrics.frechet_distance(features, real_features),
      'class_entropy': metrics.class_entropy(predicted),
      'per_class_accuracy': dict(zip(fashion_mnist.CLASS_NAMES, per_class.round(4).tolist())),
  }


def judge_facts(judge: Judge, data: fashion_mnist.FashionMnist, test_outputs: tuple,
                seed: int) -> dict:
  """The judge's test accuracy, and the FID floor: real training images against the test set
  (`test_outputs`: the judge's (logits, features) of the test set)."""
  logits, test_features = test_outputs
  subset = np.random.default_rng(seed).permutation(len(data.train_images))[:len(data.test_images)]
  return {'classifier_test_accuracy': metrics.conditional_accuracy(logits.argmax(-1),
                                                                   data.test_labels),
          'fid_train_vs_test': metrics.frechet_distance(judge(data.train_images[subset])[1],
                                                        test_features)}


def epoch_metrics(config, judge: Judge, ref: Reference):
  """The per-epoch check: `(g_params) -> {val_conditional_accuracy, val_fid}` on
  `config.eval.epoch_num_per_class` images a class (fixed noise), against the validation slice.
  A smaller sample than the final evaluation's, so its FID reads higher (biased upward)."""
  real_features = judge.real_outputs(ref)[1]

  def evaluate(g_params) -> dict:
    images, labels = generate.class_grid(config, g_params, config.eval.epoch_num_per_class,
                                         seed=config.seed + SEED_EPOCH)
    found = quality_metrics(judge, images, labels, real_features)
    return {'val_conditional_accuracy': found['conditional_accuracy'], 'val_fid': found['fid']}
  return evaluate


def cas_accuracies(config, judge: Judge, workdir: Path, g_params, refs: list[Reference],
                   digest: str) -> dict:
  """`{ref}_cas_accuracy`: the judge's architecture and recipe trained only on generated images,
  tested on each real reference; resumes `cas_classifier/` if trained for the same `digest`."""
  images, labels = generate.class_grid(config, g_params, config.eval.cas_num_per_class,
                                       seed=config.seed + SEED_CAS)
  cas_dir = workdir / 'cas_classifier'
  stamp = {'generator_sha256': digest}
  if jsonio.read_json_object(cas_dir / CAS_STAMP) == stamp:
    console.say(f'resuming the CAS classifier in {cas_dir}')
  else:
    shutil.rmtree(cas_dir, ignore_errors=True)  # Its checkpoints belong to another generator.
    with storage.writing(cas_dir, '--workdir'):
      cas_dir.mkdir()
    write_json(cas_dir / CAS_STAMP, stamp)
  meta = classifier_lib.model_meta(judge.config, 'cas_classifier')
  state = classifier_lib.train_classifier(judge.config, cas_dir, images, labels, meta)
  return {f'{r.name}_cas_accuracy': classifier_lib.accuracy(judge.model, state.params, r.images,
                                                             r.labels) for r in refs}


def evaluation_digest(config, g_params, judge: Judge) -> str:
  """SHA-256 of what the evaluation's numbers depend on: both nets' parameters, the config."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves((g_params, judge.params)):
    digest.update(np.asarray(leaf).tobytes())
  fields = {'seed': config.seed, 'model': config.model.to_dict(),
            'val': [config.data.val_size, config.data.split_seed],
            'eval': {k: v for k, v in config.eval.to_dict().items()
                     if k not in ('after_training', 'epoch_num_per_class')}}
  digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
  return digest.hexdigest()


def evaluate_and_write(config, workdir: Path, g_params, data: fashion_mnist.FashionMnist,
                       extra: dict, judge: Judge) -> dict:
  """Writes every metric into `results.json` (with `extra`, whose `seconds` it completes); a run
  cut short resumes after the last phase kept in `PROGRESS_FILE`."""
  start = time.perf_counter()
  faults.crash_point('cgan-eval:judge-ready')
  digest = evaluation_digest(config, g_params, judge)
  progress_path = workdir / PROGRESS_FILE
  progress = jsonio.read_json_object(progress_path)
  if progress.get('digest') != digest:
    progress = {'digest': digest}
  else:
    console.say(f'resuming the evaluation: {", ".join(k for k in progress if k != "digest")} '
                f'from {progress_path}')
  refs = references(config, data)
  if 'quality' not in progress:
    progress['quality'] = judge_facts(judge, data, judge.real_outputs(refs[-1]), config.seed)
    for ref in refs:
      images, labels = generate.class_grid(config, g_params, config.eval.num_per_class,
                                           seed=config.seed + ref.seed_offset)
      found = quality_metrics(judge, images, labels, judge.real_outputs(ref)[1])
      progress['quality'].update({f'{ref.name}_{k}': v for k, v in found.items()})
    write_json(progress_path, progress)
  faults.crash_point('cgan-eval:scored')
  if 'cas' not in progress:
    progress['cas'] = cas_accuracies(config, judge, workdir, g_params, refs, digest)
    write_json(progress_path, progress)
  faults.crash_point('cgan-eval:cas-done')
  seconds = {**extra.get('seconds', {}), 'judge_training': round(judge.train_seconds, 1),
             'evaluation': round(time.perf_counter() - start, 1)}
  results = {**extra, **progress['quality'], **progress['cas'], 'seconds': seconds,
             'num_params_generator': count_params(g_params),
             'num_val_images': len(refs[0].images) if refs[0].name == 'val' else 0,
             'fid_note': "FID in the project's Fashion-MNIST classifier feature space, "
                         'not Inception.'}
  write_json(workdir / 'results.json', results)
  with storage.writing(progress_path, '--workdir'):
    progress_path.unlink(missing_ok=True)
  _print_results(results)
  return results


def _print_results(results: dict) -> None:
  lines = [f'{key:>26}: {results[key]:.4f}' for key in _PRINTED if key in results]
  names = [n for n in ('val', 'test') if f'{n}_per_class_accuracy' in results]
  lines.append(f'{"class":>26}  ' + '  '.join(f'{n} conditional accuracy' for n in names))
  for cls in fashion_mnist.CLASS_NAMES:
    lines.append(f'{cls:>26}  ' + '  '.join(
        f'{results[f"{n}_per_class_accuracy"][cls]:>{len(n) + 23}.3f}' for n in names))
  lines.append('seconds: ' + ', '.join(f'{k} {v:.0f}' for k, v in results['seconds'].items()))
  console.say('\n'.join(lines))
