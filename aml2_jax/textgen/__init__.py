"""Experiment 2: character-level SMS text generation with a SimpleRNN or an LSTM.

`configs/textgen_rnn.py` and `configs/textgen_lstm.py` reproduce the study (RMSProp 0.01, learning
rate x0.2 when the epoch's training loss stops improving, best model kept) and add what it lacked:
held-out messages (a validation part that picks the checkpoint, a test part scored once), held-out
loss and bits per character, count-based baselines on the same windows, and the faster
`all_chars` objective as an option (see `aml2_jax.datasets.char_corpus`).

Beyond the study, as options: windows at a fresh random offset every epoch, dropout on the input
and the recurrent state, AdamW with warm-up and cosine decay, gradient clipping.

Modules: `input_pipeline` (messages, held-out split, windows), `models`, `optim` (the optimizer
chain and the plateau schedule), `train` (jitted step, validation, restore), `generate` (the
sampler and prompts), `sample` (the sample mode), `baselines` (unigram and n-gram bits/char:
`python -m aml2_jax.textgen.baselines`), `interpolate` (a trained network mixed with the 5-gram,
one weight picked on validation: `python -m aml2_jax.textgen.interpolate --workdir=RUN_DIR`).
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
  config_lib.check_positive(config, 'model.units', 'optim.learning_rate',
                            'optim.eps', 'optim.plateau_patience', 'data.window',
                            'eval.batch_size', 'eval.stride')
  for name in ('model.dropout', 'model.input_dropout', 'model.recurrent_dropout',
               'optim.end_lr_fraction', 'optim.b1', 'optim.b2'):
    config_lib.check_fraction(config, name)
  config_lib.check_choice(config, 'optim.optimizer', optim.OPTIMIZERS)
  config_lib.check_choice(config, 'optim.schedule', optim.SCHEDULES)
  config_lib.check_positive(config, 'sample.every_epochs')
  config_lib.check_non_negative(config, 'optim.warmup_epochs', 'optim.weight_decay',
                                'optim.clip_norm')
  if config.data.random_offsets and config.objective != 'all_chars':
    raise UserError('config.data.random_offsets needs --config.objective=all_chars (next_char '
                    'already trains on a window at every offset).')
  config_lib.check_fraction(config, 'optim.rho')
  config_lib.check_fraction(config, 'optim.plateau_factor', allow_zero=False)
  config_lib.check_fraction(config, 'data.val_fraction', allow_zero=False)
  config_lib.check_fraction(config, 'data.test_fraction', allow_zero=False)
  if config.data.val_fraction + config.data.test_fraction >= 1:
    raise UserError(f'config.data.val_fraction + config.data.test_fraction is '
                    f'{config.data.val_fraction + config.data.test_fraction}: it must be < 1 to '
                    'leave training messages; lower them.')
  config_lib.check_non_negative(config, 'model.unroll', 'data.max_windows', 'data.limit_messages',
                                'sample.length', 'sample.temperature', 'optim.plateau_atol',
                                'optim.plateau_rtol')


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
