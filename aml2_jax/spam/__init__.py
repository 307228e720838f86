"""Experiment 1: the SMS spam classifier, Embedding -> SimpleRNN or LSTM -> dense -> one logit.

`train` runs one seed, `seeds` several and their summary, `predict` is the predict mode
(docs/spam.md).
"""

from pathlib import Path

import jax
import ml_collections

from aml2_jax.errors import UserError
from aml2_jax.spam import input_pipeline, seeds, train as train_lib
from aml2_jax.spam.input_pipeline import SpamSplit, prepare_split, vocab_digest
from aml2_jax.spam.predict import predict
from aml2_jax.training import config as config_lib
from aml2_jax.training.checkpoint_integrity import check_compatible
from aml2_jax.runtime import run_record
from aml2_jax.runtime.workdir import WorkdirLock, write_config

CONFIGS = ('spam_rnn', 'spam_lstm')
build_task = train_lib.build_task


def check_config(config: ml_collections.ConfigDict) -> None:
  config_lib.check_base(config)
  config_lib.check_positive(config, 'num_seeds', 'optim.learning_rate', 'model.embed_dim',
                            'model.units', 'data.maxlen')
  config_lib.check_non_negative(config, 'model.unroll')
  config_lib.check_fraction(config, 'model.dropout')
  config_lib.check_fraction(config, 'data.test_fraction', allow_zero=False)
  config_lib.check_fraction(config, 'data.val_fraction', allow_zero=False)
  if config.model.cell not in train_lib.CONFIG_FILES:
    raise UserError(f'config.model.cell is {config.model.cell!r}: use "simple" or "lstm".')
  if any(width <= 0 for width in config.model.hidden):
    raise UserError(f'config.model.hidden is {tuple(config.model.hidden)}: widths must be > 0.')
  if config.data.num_words < 2:
    raise UserError(f'config.data.num_words is {config.data.num_words}: it must be >= 2 '
                    '(id 0 is padding, so num_words - 1 words are kept).')
  if config.optim.schedule not in ('constant', 'cosine'):
    raise UserError(f'config.optim.schedule is {config.optim.schedule!r}: use "constant" (the '
                    'study\'s) or "cosine" (decays to 0 by the last step).')
  if config.data.tokenizer_fit not in ('train', 'all'):
    raise UserError(f'config.data.tokenizer_fit is {config.data.tokenizer_fit!r}: use "train" '
                    '(no test leakage) or "all" (as the study did).')
  folds = config.data.cv_folds
  if folds < 0 or folds == 1:
    raise UserError(f'config.data.cv_folds is {folds}: use 0 (one validation part) or >= 2 folds.')
  if folds and not 0 <= config.data.cv_fold <= folds - config.num_seeds:
    raise UserError(f'config.data.cv_fold is {config.data.cv_fold} with num_seeds '
                    f'{config.num_seeds}: seed k validates on fold cv_fold + k, in 0..{folds - 1}.')
  if config.data.limit < 0:
    raise UserError('config.data.limit must be >= 0 (0 = every message).')


def load_data(config: ml_collections.ConfigDict) -> SpamSplit:
  """The encoded train/validation/test split of one run (corpus, dedup, split, tokenizer)."""
  return prepare_split(input_pipeline.load_corpus(config), config)


def param_trees(config: ml_collections.ConfigDict) -> dict:
  params = jax.eval_shape(lambda: train_lib.create_train_state(config)).params
  return {f'SpamClassifier (cell={config.model.cell})': params}


def train_and_evaluate(config, workdir: Path, options=None) -> dict:
  """Trains every seed (resuming where checkpoints exist), then writes the summary."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    corpus = input_pipeline.load_corpus(config)
    return seeds.write_summary(config, workdir, seeds.train_seeds(config, workdir, corpus), corpus)


def evaluate(config, workdir: Path, options=None) -> dict:
  """Re-scores every seed's checkpoint (`train.restore_for_eval`) and rewrites the results."""
  with WorkdirLock(workdir):
    corpus = input_pipeline.load_corpus(config)
    per_seed = {}
    for run in seeds.run_configs(config):
      run_dir = seeds.seed_dir(workdir, run.seed)
      params, _, saved, step = train_lib.restore_for_eval(run, run_dir, workdir)
      split = prepare_split(corpus, run)
      check_compatible(saved, train_lib.checkpoint_meta(run, vocab_digest(split.tokenizer)),
                       run_dir, resume=False)
      per_seed[run.seed] = train_lib.write_run_results(run, run_dir, params, split, step,
                                                       run_record.training_facts(run_dir))
    return seeds.write_summary(config, workdir, per_seed, corpus)


MODES = {'train': train_and_evaluate, 'eval': evaluate, 'predict': predict}
