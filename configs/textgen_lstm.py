"""Character-level SMS text generator: LSTM(128) -> Dense(vocab), 141,045 params.

Run:      python launch.py --config=configs/textgen_lstm.py       (workdir runs/textgen_lstm)
Fast:     python launch.py --config=configs/textgen_lstm.py --config.objective=all_chars \
              --workdir=runs/textgen_lstm_all_chars
Sample:   python launch.py --config=configs/textgen_lstm.py --mode=sample --prompt="Free " \
              --length=160 --temperature=0.5 --seed=0
Expect:   next_char (the study's objective): about 3,200 steps of 128 windows per epoch, 4-7
          minutes per epoch on a 2-core AMD EPYC CPU, so 30 epochs take a few hours.
          all_chars: 33 steps per epoch, 30 epochs in about 6 minutes. Validation bits/char and
          samples are printed every epoch; results.json (val_bpc, test_bpc) at the end. After
          30 next_char epochs: about 2.6 validation bits/char, short of the 5-gram baseline's
          2.5. See docs/textgen.md.
Beyond:   windows at a fresh random offset every epoch, dropout on the state, AdamW with a
          cosine decay, clipping (each a field below; off by default, the study's recipe):
            python launch.py --config=configs/textgen_lstm.py --config.objective=all_chars \
              --config.data.random_offsets --config.batch_size=64 --config.model.dropout=0.1 \
              --config.model.recurrent_dropout=0.1 --config.optim.optimizer=adamw \
              --config.optim.learning_rate=6e-3 --config.optim.schedule=cosine \
              --config.optim.warmup_epochs=3 --config.optim.clip_norm=1.0 \
              --config.optim.weight_decay=0.05 --noconfig.optim.plateau --config.num_epochs=400 \
              --config.eval.stride=8
          63 steps per epoch; 2.450 validation / 2.381 test bits/char (best epoch 280; 6-13 s an
          epoch on 2 shared cores): below the 5-gram's 2.493 / 2.383 (on test by 0.002). Mixed
          with the 5-gram (python -m aml2_jax.textgen.interpolate --workdir=RUN_DIR): 2.34 / 2.25.
Baselines: python -m aml2_jax.textgen.baselines   (unigram and 5-gram bits/char, same windows)
Smoke:    python launch.py --config=configs/textgen_lstm.py:smoke --workdir=/tmp/textgen_lstm
"""

from aml2_jax.training.config import base_config


def get_config(variant: str = ''):
  config = base_config('textgen')
  # 'next_char': the study's, the character after each sliding 100-char window;
  # 'all_chars': every next character of non-overlapping windows (~100x fewer windows per epoch).
  config.objective = 'next_char'
  config.num_epochs = 30
  config.batch_size = 128
  config.model = dict(
      cell='lstm',  # 'lstm' (Keras LSTM, forget-gate bias 1) or 'simple'.
      units=128,  # Recurrent width: 141,045 params in all with the 117-char vocabulary.
      dropout=0.0,  # Dropout on the recurrent output; the study's LSTM has none.
      input_dropout=0.0,  # Dropout on the one-hot input, one mask per window (0 = none, study).
      recurrent_dropout=0.0,  # Variational dropout on the state, one mask per window (0 = none).
      unroll=0,  # Time steps per scan iteration (speed only); 0 = config.backend_defaults.
  )
  config.optim = dict(
      optimizer='rmsprop',  # 'rmsprop' (Keras' RMSprop, the study's) or 'adamw'.
      learning_rate=0.01,  # The study's RMSProp rate; the peak rate under a schedule.
      schedule='constant',  # 'constant' (the study's) or 'cosine' (warm-up, then cosine decay).
      warmup_epochs=0,  # Linear warm-up from 0 over this many epochs (cosine schedule only).
      end_lr_fraction=0.0,  # The cosine ends at this fraction of learning_rate at the last step.
      clip_norm=0.0,  # Clip the gradients' global norm to this before the update (0 = no clip).
      weight_decay=0.0,  # AdamW's decoupled weight decay, on the kernels (not the biases).
      b1=0.9,  # AdamW's first-moment decay.
      b2=0.999,  # AdamW's second-moment decay.
      plateau=True,  # Keras' ReduceLROnPlateau on the training loss (the study's); False = off.
      rho=0.9,  # Keras' RMSprop rho (optax `decay`).
      eps=1e-7,  # Keras' RMSprop epsilon (optax's default is 1e-8).
      eps_in_sqrt=True,  # Keras divides by sqrt(velocity + eps): eps inside the root.
      plateau_factor=0.2,  # Learning rate x this when the epoch's training loss stops improving.
      plateau_patience=1,  # Epochs without improvement before the reduction.
      plateau_atol=1e-4,  # Improvement means a drop of more than this (Keras' min_delta)...
      plateau_rtol=0.0,  # ...and no relative tolerance (Keras has none).
      ema_decay=0.0,  # > 0: validate, sample and test a moving average of the weights.
  )
  config.data.window = 100  # Characters per window (the study's sequence length).
  # Held-out shares of the distinct normalised messages (case, punctuation, spacing ignored):
  config.data.val_fraction = 0.05  # Validation: per-epoch bits/char, picks the checkpoint.
  config.data.test_fraction = 0.05  # Test, disjoint: scored once, at the end (test_bpc).
  config.data.split_seed = 0  # Seeds the held-out choice (kept apart from config.seed).
  # all_chars only: cut the text (read as a cycle) at a fresh random offset every epoch, drawn
  # from (seed, epoch), instead of the same windows every epoch.
  config.data.random_offsets = False
  config.data.max_windows = 0  # Train on a fixed random subset of this many windows (0 = all).
  config.data.limit_messages = 0  # Use only the first N messages (0 = all); for smoke runs.
  config.eval = dict(
      batch_size=500,  # Validation windows per jitted call.
      # Per-epoch validation on every stride-th held-out window (of ~22,000); results.json
      # always uses all of them. 4 keeps all_chars epochs from being mostly validation.
      stride=4,
  )
  config.sample = dict(
      prompts=('', 'Free ', 'Hey '),  # Prompts of the samples logged every epoch.
      length=160,  # Characters per logged sample (it stops early at the end character).
      temperature=0.5,  # Softmax temperature of the logged samples (0 = greedy).
      every_epochs=1,  # Log samples every this many epochs (and after the last).
  )
  if variant == 'smoke':
    config.num_epochs = 2
    config.batch_size = 16
    config.steps_per_call = 4
    config.data.limit_messages = 300
    config.data.max_windows = 128
    config.data.val_fraction = 0.1
    config.data.test_fraction = 0.1
    config.eval.stride = 50
    config.sample.length = 20
  elif variant:
    raise ValueError(f'unknown variant {variant!r}; use "smoke" or none')
  return config
