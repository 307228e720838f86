"""The judge, the Fashion-MNIST classifier that measures the cGAN's images: trained once by
`ensure_judge` (a named step of the cGAN's train and eval modes), restored by `Judge`."""

import time
from pathlib import Path

import ml_collections
import numpy as np

from aml2_jax import console
from aml2_jax import fmnist_classifier
from aml2_jax.errors import UserError
from aml2_jax.fmnist_classifier import train as classifier_lib
from aml2_jax.runtime import run_record, storage
from aml2_jax.training.config import load_config


def judge_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`configs/fmnist_classifier.py` (variant `eval.classifier_variant`) on the cGAN's data and
  devices (a multi-process run trains it on all of them)."""
  judge = load_config('fmnist_classifier', config.eval.classifier_variant)
  judge.data.dir = config.data.dir
  judge.num_devices = config.num_devices
  return judge


def judge_workdir(config: ml_collections.ConfigDict, workdir: Path) -> Path:
  """`eval.classifier_workdir`, or `fmnist_classifier/` beside the cGAN's workdir."""
  default = Path(workdir).parent / 'fmnist_classifier'
  return Path(config.eval.classifier_workdir or default).absolute()


def ensure_judge(config: ml_collections.ConfigDict, workdir: Path) -> 'Judge':
  """The judge from `judge_workdir`, trained there first (or its cut-short training resumed) when
  it has no finished training; says which on the console."""
  judge_dir, judge = judge_workdir(config, workdir), judge_config(config)
  if Judge.trained(judge_dir):
    console.say(f'judge: the trained classifier in {judge_dir}')
    return Judge(config, workdir)
  epochs = f'{judge.num_epochs} epoch{"s" * (judge.num_epochs != 1)}'
  console.say(f'judge: training the Fashion-MNIST classifier in {judge_dir} ({epochs} of '
              'configs/fmnist_classifier.py; once, reused by later runs)')
  with storage.writing(judge_dir, '--config.eval.classifier_workdir'):
    judge_dir.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  with run_record.RunRecorder(judge_dir, 'train'):  # Its run.json names this command.
    fmnist_classifier.train_and_evaluate(judge, judge_dir)
  return Judge(config, workdir, train_seconds=time.perf_counter() - start)


class Judge:
  """The trained classifier, restored from its workdir; refuses in one line, naming the command
  that trains it, when there is none."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: Path, train_seconds: float = 0.0):
    self.config = judge_config(config)
    self.workdir = judge_workdir(config, workdir)
    # Just trained: every process restores it, though only process 0 writes its results.json.
    if not train_seconds and not self.trained(self.workdir):
      variant = config.eval.classifier_variant
      command = (f'{classifier_lib.TRAIN_COMMAND}{":" + variant if variant else ""} '
                 f'--workdir={self.workdir}')
      raise UserError(f'no trained judge in {self.workdir}; train it with `{command}` (the '
                      "cGAN's train and eval modes train it first when it is missing)")
    self.train_seconds = train_seconds  # Spent training it in this process (0 when reused).
    self.model = classifier_lib.make_model(self.config)
    self.params = classifier_lib.restore_params(self.config, self.workdir)
    self._real = {}

  @staticmethod
  def trained(judge_dir: Path) -> bool:
    return (judge_dir / 'results.json').exists()  # Written when its training completes.

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [num, 28, 28] -> (logits [num, 10], features [num, feature_dim])."""
    return tuple(classifier_lib.predict_fn(self.model)(self.params, images))

  def real_outputs(self, ref) -> tuple[np.ndarray, np.ndarray]:
    """`self(ref.images)` for a `quality.Reference`, computed once per process."""
    if ref.name not in self._real:
      self._real[ref.name] = self(ref.images)
    return self._real[ref.name]
