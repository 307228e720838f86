"""SMS spam classifier, LSTM: Embedding(5000, 50) -> LSTM(32) -> Dense(1).

Everything but the model is the RNN config's (`configs/spam_rnn.py`): same data, split, tokenizer,
Adam 1e-3, batch 32, 10 epochs.

Run:      python launch.py --config=configs/spam_lstm.py     (workdir runs/spam_lstm)
Seeds:    --config.num_seeds=5     (runs/spam_lstm/seed_<k>/; mean ± std in its results.json)
Study:    --noconfig.data.dedup --config.data.tokenizer_fit=all
CV:       --config.num_seeds=5 --config.data.cv_folds=5   (seed k validates on fold k)
Predict:  python launch.py --config=configs/spam_lstm.py --mode=predict --text="WIN a prize now"
Summary:  python launch.py --config=configs/spam_lstm.py --mode=summary   (260,657 params)
Expect:   mean of 5 seeds: test accuracy about 98.7% deduplicated (the default), 98.9% with
          duplicates kept; about 30-40 s a seed on a 2-core AMD EPYC CPU. docs/spam.md has the
          measured tables, and the training choices tried on validation.
Smoke:    python launch.py --config=configs/spam_lstm.py:smoke --workdir=/tmp/spam_smoke
"""

from configs import spam_rnn


def get_config(variant: str = ''):
  config = spam_rnn.get_config(variant)
  config.model.cell = 'lstm'  # LSTM cell (Keras gate order i, f, c, o; forget bias 1).
  config.model.hidden = ()  # No dense layer between the LSTM and the logit...
  config.model.dropout = 0.0  # ...so no dropout either.
  return config
