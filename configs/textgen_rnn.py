"""Character-level SMS generator: SimpleRNN(278) -> Dropout(0.2) -> Dense(vocab), 142,731 params.

Run:      python launch.py --config=configs/textgen_rnn.py        (workdir runs/textgen_rnn)
Fast:     python launch.py --config=configs/textgen_rnn.py --config.objective=all_chars \
              --workdir=runs/textgen_rnn_all_chars
Sample:   python launch.py --config=configs/textgen_rnn.py --mode=sample --prompt="Free " \
              --length=160 --temperature=0.5 --seed=0
Expect:   next_char (the study's objective): 3,378 steps of 128 windows per epoch, 52-90 ms per step
          on 2 CPU cores (3-5 min per epoch); at lr 0.01 the RNN does not learn in epoch 1 (5.6
          bits/char). all_chars: 33 steps per epoch, 30 epochs in ~5 min, validation 3.68
          bits/char. Validation bits/char and samples are printed every epoch; results.json at
          the end. See README.md.
Everything but the model is the LSTM config's (`configs/textgen_lstm.py`).
Smoke:    python launch.py --config=configs/textgen_rnn.py:smoke --workdir=/tmp/textgen_rnn
"""

from configs import textgen_lstm


def get_config(variant: str = ''):
  config = textgen_lstm.get_config(variant)
  config.model.cell = 'simple'  # 'simple' (Keras SimpleRNN, tanh) or 'lstm'.
  config.model.units = 278  # Recurrent width: 142,731 params in all with the 117-char vocabulary.
  config.model.dropout = 0.2  # Dropout on the recurrent output, before the Dense layer.
  config.model.unroll = 0  # Time steps per scan iteration: the backend's default (speed only)...
  config.backend_defaults.unroll.cpu = 4  # ...which on CPU is 4, measured fastest for this width.
  return config
