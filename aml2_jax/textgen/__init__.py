"""Experiment 2: character-level SMS text generation, SimpleRNN or LSTM (docs/textgen.md).

The study's recipe plus held-out messages, bits/char, count baselines (`baselines`, `interpolate`)
and options (`all_chars`, random offsets, dropout, AdamW); `sample` is the sample mode.
"""

from pathlib import Path

import jax
import ml_collections

from aml2_jax import jsonio
from aml2_jax.datasets import char_corpus
from aml2_jax.datasets.char_corpus import Vocabulary
from aml2_jax.errors import UserError
from aml2_jax.textgen import input_pipeline, optim, train as train_lib
from aml2_jax.textgen.sample import sample
from aml2_jax.training import config as config_lib
from aml2_jax.runtime.workdir import WorkdirLock, write_config

CONFIGS = ('textgen_rnn', 'textgen_lstm')
load_data = input_pipeline.load_corpus
build_task = train_lib.build_task


def check_config(config: ml_collections.ConfigDict) -> None:
  config_lib.check_base(config)
  config_lib.check_choice(config, 'objective', char_corpus.OBJECTIVES)
  config_lib.check_choice(config, 'model.cell', tuple(train_lib.CONFIG_FILES))
  config_lib.check_choice(config, 'optim.optimizer', optim.OPTIMIZERS)
  config_lib.check_choice(config, 'optim.schedule', optim.SCHEDULES)
  config_lib.check_positive(config, 'model.units', 'optim.learning_rate', 'optim.eps',
                            'optim.plateau_patience', 'data.window', 'eval.batch_size',
                            'eval.stride', 'sample.every_epochs')
  config_lib.check_non_negative(config, 'model.unroll', 'data.max_windows', 'data.limit_messages',
                                'sample.length', 'sample.temperature', 'optim.plateau_atol',
                                'optim.plateau_rtol', 'optim.warmup_epochs', 'optim.weight_decay',
                                'optim.clip_norm')
  for name in ('model.dropout', 'model.input_dropout', 'model.recurrent_dropout',
               'optim.end_lr_fraction', 'optim.b1', 'optim.b2', 'optim.rho', 'optim.ema_decay'):
    config_lib.check_fraction(config, name)
  for name in ('optim.plateau_factor', 'data.val_fraction', 'data.test_fraction'):
    config_lib.check_fraction(config, name, allow_zero=False)
  held_out = config.data.val_fraction + config.data.test_fraction
  if held_out >= 1:
    raise UserError(f'config.data.val_fraction + config.data.test_fraction is {held_out}: it must '
                    'be < 1 to leave training messages; lower them.')
  if config.data.random_offsets and config.objective != 'all_chars':
    raise UserError('config.data.random_offsets needs --config.objective=all_chars (next_char '
                    'already trains on a window at every offset).')


def param_trees(config: ml_collections.ConfigDict) -> dict:
  vocab = input_pipeline.load_corpus(config).vocab
  params = jax.eval_shape(lambda: train_lib.create_train_state(config, vocab.size)).params
  return {f'CharModel ({config.model.cell}, vocab {vocab.size}, objective {config.objective})':
          params}


def train_and_evaluate(config, workdir: Path, options=None) -> dict:
  """Trains (resuming if possible); writes results.json for the best checkpoint."""
  with WorkdirLock(workdir):
    write_config(workdir, config)
    return train_lib.train(config, workdir)


def evaluate(config, workdir: Path, options=None) -> dict:
  """Validation and test loss and bits/char of the best checkpoint, merged into results.json."""
  corpus = input_pipeline.load_corpus(config)
  vocab = Vocabulary.load(workdir / char_corpus.VOCAB_FILE)
  if vocab != corpus.vocab:
    raise UserError(f'the vocabulary in {workdir} differs from this data\'s; evaluate with the '
                    f'data (and config.data.limit_messages) the model was trained on.')
  params, _ = train_lib.restore_best(config, workdir, vocab)
  previous = jsonio.read_json_object(workdir / 'results.json')
  with WorkdirLock(workdir):
    return train_lib.write_results(config, workdir, params, corpus, previous)


MODES = {'train': train_and_evaluate, 'eval': evaluate, 'sample': sample}
