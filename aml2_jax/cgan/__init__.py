"""Experiment 3, the main job: a conditional GAN on Fashion-MNIST, judged by a classifier; its
training ends with the quality evaluation (`quality`) unless `config.eval.after_training` is off."""

import time
from pathlib import Path

import jax
import ml_collections

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.cgan import losses, quality, train as train_lib
from aml2_jax.cgan.judge import ensure_judge
from aml2_jax.cgan.sample import sample
from aml2_jax.datasets import fashion_mnist
from aml2_jax.layers import fast_ops
from aml2_jax.plotting.curves import plot_curves
from aml2_jax.training import restore
from aml2_jax.runtime import run_record
from aml2_jax.training import config as config_lib
from aml2_jax.runtime.workdir import WorkdirLock, write_config

CONFIGS = ('cgan',)
build_task = train_lib.build_task


def check_config(config: ml_collections.ConfigDict) -> None:
  config_lib.check_base(config)
  config_lib.check_positive(config, 'model.latent_dim', 'optim.learning_rate',
                            'eval.num_per_class', 'eval.cas_num_per_class')
  config_lib.check_fraction(config, 'model.dropout')
  config_lib.check_fraction(config, 'optim.g_ema_decay')
  config_lib.check_non_negative(config, 'data.limit', 'data.val_size', 'eval.epoch_num_per_class')
  if config.data.limit and config.data.val_size >= config.data.limit:
    raise UserError(f'config.data.val_size={config.data.val_size} leaves no training images of '
                    f'config.data.limit={config.data.limit}; lower it (0 = no validation slice).')
  if not 0 < config.optim.real_label <= 1:
    raise UserError(f'config.optim.real_label is {config.optim.real_label}: it must be in (0, 1].')
  config_lib.check_non_negative(config, 'optim.d_learning_rate', 'optim.r1_weight',
                                'optim.class_weight')
  config_lib.check_positive(config, 'optim.d_steps')
  config_lib.check_choice(config, 'optim.loss', losses.LOSSES)
  if config.optim.loss == 'hinge' and config.optim.real_label != 1:
    raise UserError('config.optim.real_label applies to the bce loss only; '
                    'with --config.optim.loss=hinge leave it at 1.')
  config_lib.check_choice(config, 'model.dtype', ('float32', 'bfloat16'))
  config_lib.check_choice(config, 'model.ops', fast_ops.OPS)


def load_data(config: ml_collections.ConfigDict) -> fashion_mnist.FashionMnist:
  """Fashion-MNIST; smoke runs train on the first `config.data.limit` images."""
  return fashion_mnist.load_fashion_mnist(config.data.dir).head(config.data.limit)


def param_trees(config: ml_collections.ConfigDict) -> dict:
  state = jax.eval_shape(lambda: train_lib.create_train_state(config))
  return {'Generator': state.g.params, 'Discriminator': state.d.params}


def train_and_evaluate(config, workdir: Path, options=None) -> dict:
  """Trains (resuming if possible), then measures the generator's quality into results.json, in
  announced steps: the judge (trained once), the GAN's training, the evaluation."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    data = load_data(config)
    # The step training resumes from: 0 for a fresh run, the last one when only evaluation is left.
    resumed_from = restore.refuse_incompatible(workdir, train_lib.model_meta(config)) or 0
    checked = bool(config.data.val_size and config.eval.epoch_num_per_class)
    steps = (['judge'] * (checked or config.eval.after_training) + ['GAN training']
             + ['evaluation'] * config.eval.after_training)
    judge, epoch_check = None, None
    if 'judge' in steps:
      announce(steps, 'judge')
      judge = ensure_judge(config, workdir)
    if checked:
      epoch_check = quality.epoch_metrics(config, judge, quality.references(config, data)[0])
    announce(steps, 'GAN training', f'{config.num_epochs} epoch{"s" * (config.num_epochs != 1)} '
                                    f'in {workdir}')
    start = time.perf_counter()
    state = train_lib.train(config, workdir, data, epoch_check)
    train_seconds = time.perf_counter() - start
    plot_curves(workdir, ['train_d_loss', 'train_g_loss', 'train_d_real', 'train_d_fake',
                          'val_conditional_accuracy', 'val_fid'])
    console.say(f'trained in {train_seconds:.0f} s; samples in {workdir / "samples"}')
    if not config.eval.after_training:
      return {}
    announce(steps, 'evaluation')
    extra = {'train_wall_s': round(train_seconds, 1), 'resumed_from_step': resumed_from,
             'seconds': {'gan_training': round(train_seconds, 1)}}
    return quality.evaluate_and_write(config, workdir, train_lib.generator_params(config, state),
                                      data, extra, judge)


def evaluate(config, workdir: Path, options=None) -> dict:
  """Measures a trained generator's quality into results.json: the judge (trained first if its
  workdir has none), then the evaluation."""
  g_params = train_lib.restore_generator(config, workdir)
  with WorkdirLock(workdir):
    steps = ['judge', 'evaluation']
    announce(steps, 'judge')
    judge = ensure_judge(config, workdir)
    announce(steps, 'evaluation')
    extra = run_record.training_facts(workdir)
    if 'train_wall_s' in extra:
      extra['seconds'] = {'gan_training': extra['train_wall_s']}
    return quality.evaluate_and_write(config, workdir, g_params, load_data(config), extra, judge)


def announce(steps: list[str], name: str, detail: str = '') -> None:
  """Says which of a mode's named `steps` starts: `step 2/3: GAN training (...)`."""
  detail = f' ({detail})' if detail else ''
  console.say(f'step {steps.index(name) + 1}/{len(steps)}: {name}{detail}')


MODES = {'train': train_and_evaluate, 'eval': evaluate, 'sample': sample}
