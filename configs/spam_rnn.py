"""SMS spam classifier, RNN: Embedding(5000, 50) -> SimpleRNN(32) -> Dense(256) -> Dense(1).

Dense(256) has ReLU and dropout 0.25 after it; the logit's sigmoid is in the loss.

Run:      python launch.py --config=configs/spam_rnn.py      (workdir runs/spam_rnn)
Seeds:    --config.num_seeds=5     (runs/spam_rnn/seed_<k>/; mean ± std in its results.json); the
          seeds train in one program, vmapped over a seed axis, each on its own split and data
          order (the results of training them one after another, up to float rounding);
          --noconfig.seeds_in_one_program trains them one after another
Study:    --noconfig.data.dedup --config.data.tokenizer_fit=all   (duplicates kept, vocabulary fit
          on all messages, as the study did; the study had no validation part)
CV:       --config.num_seeds=5 --config.data.cv_folds=5   (5-fold cross-validation: seed k
          validates on fold k of the non-test part; one test part for all)
Predict:  python launch.py --config=configs/spam_rnn.py --mode=predict --text="WIN a FREE prize now"
Summary:  python launch.py --config=configs/spam_rnn.py --mode=summary    (261,361 params)
Expect:   mean of 5 seeds: test accuracy about 98.7% deduplicated (the default), 98.9% with
          duplicates kept; about 15-20 s a seed on a 2-core AMD EPYC CPU. docs/spam.md has the
          measured tables, and the training choices tried on validation.
Smoke:    python launch.py --config=configs/spam_rnn.py:smoke --workdir=/tmp/spam_smoke
"""

from aml2_jax.training.config import base_config


def get_config(variant: str = ''):
  config = base_config('spam')
  config.num_epochs = 10  # The study's 10 epochs.
  config.batch_size = 32  # Keras' default batch, as in the study.
  config.num_seeds = 1  # Train seeds seed, seed+1, ...; each in <workdir>/seed_<seed>/.
  # Several seeds train side by side in one jitted program (seed axis, vmapped step); False: one
  # after another. Either way each seed's directory, split and results are its own.
  config.seeds_in_one_program = True
  # Test with the epoch of the lowest validation loss instead of the last one (the study's 10th).
  config.keep_best_val_epoch = False
  config.model = dict(
      cell='simple',  # 'simple' (tanh Elman RNN) or 'lstm'.
      embed_dim=50,  # Word embedding width.
      units=32,  # Recurrent hidden size.
      hidden=(256,),  # ReLU dense widths between the recurrent layer and the logit.
      dropout=0.25,  # Dropout after each hidden dense layer (training only).
      unroll=0,  # Time steps per scan iteration (speed only); 0 = config.backend_defaults.
  )
  config.optim = dict(
      learning_rate=1e-3,  # Adam, Keras' default rate as in the study.
      eps=1e-7,  # Adam epsilon: Keras' default (optax's is 1e-8).
      # 'constant' (the study's) or 'cosine' (to 0 at the last step: a resume keeps num_epochs).
      schedule='constant',
  )
  config.data.num_words = 5000  # Tokenizer vocabulary: ids 1..num_words-1, 0 is padding.
  config.data.maxlen = 150  # Words per message: pre-padded and pre-truncated (Keras defaults).
  config.data.test_fraction = 0.2  # Test share, stratified by label; scored once, at the end.
  config.data.val_fraction = 0.1  # Validation share of the rest (per-epoch val_*), stratified.
  config.data.split_seed = 0  # Seeds the split (seed k uses split_seed + k with split_per_seed).
  config.data.split_per_seed = True  # Each seed draws its own split: the spread covers split luck.
  # K-fold cross-validation (0 = off): K >= 2 folds of the non-test part, stratified; seed k
  # validates on fold cv_fold + k and trains on the others, every seed on split seed split_seed
  # (split_per_seed aside), so all share one test part. `--config.num_seeds=5
  # --config.data.cv_folds=5`: the mean of the seeds' validation figures is the CV estimate.
  config.data.cv_folds = 0
  config.data.cv_fold = 0  # The fold the first seed validates on.
  # True: one message per normalised text (case, punctuation, spacing ignored: 5,574 -> 5,131),
  # and held-out messages whose ids copy a training one dropped. False: every row kept, copies of
  # training messages in the test set (the study's protocol).
  config.data.dedup = True
  config.data.tokenizer_fit = 'train'  # 'train' (no test leakage) or 'all' (as the study did).
  config.data.limit = 0  # Use only the first N messages (0 = all); for smoke runs.
  if variant == 'smoke':
    config.num_epochs = 2
    config.batch_size = 16
    config.steps_per_call = 4
    config.data.maxlen = 30
    config.data.limit = 600
  elif variant:
    raise ValueError(f'unknown variant {variant!r}; use "smoke" or none')
  return config
