"""Character-level SMS generator: SimpleRNN(278) -> Dropout(0.2) -> Dense(vocab), 142,731 params.

Run:      python launch.py --config=configs/textgen_rnn.py        (workdir runs/textgen_rnn)
Fast:     python launch.py --config=configs/textgen_rnn.py --config.objective=all_chars \
              --workdir=runs/textgen_rnn_all_chars
Sample:   python launch.py --config=configs/textgen_rnn.py --mode=sample --prompt="Free " \
              --length=160 --temperature=0.5 --seed=0
Expect:   next_char (the study's objective): about 3,200 steps of 128 windows per epoch, 3-5
          minutes per epoch on a 2-core AMD EPYC CPU; at the study's lr 0.01 the RNN learns
          little until the plateau schedule lowers the rate, and after 30 epochs scores about
          4.2 validation bits/char, still falling. all_chars: 33 steps per epoch, 30 epochs in
          about 5 minutes. Validation bits/char and samples are printed every epoch;
          results.json at the end. See docs/textgen.md.
Everything but the model is the LSTM config's (`configs/textgen_lstm.py`), including the options
beyond the study (random offsets, recurrent dropout, AdamW, cosine decay, clipping); none of them
has been measured on the RNN.
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
