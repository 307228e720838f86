"""What the peers share: model names, batch sizes, Keras-layout parameter counts, synthetic batches.

Imported by torch_models.py, keras_models.py and run_peer.py; needs only numpy. The batches are
the same numpy arrays for every framework (fixed seed), so the peers time the same inputs.
"""

import numpy as np

SPAM_VOCAB, SPAM_LEN, SPAM_EMBED = 5000, 150, 50
CHARS, WINDOW = 117, 100
NOISE, CLASSES, LABEL_EMBED, IMAGE = 100, 10, 10, 784
G_HIDDEN, D_HIDDEN = (256, 512, 1024), (1024, 512, 256)

BATCH_SIZES = {'spam_rnn': 32, 'spam_lstm': 32, 'textgen_rnn': 128, 'textgen_lstm': 128, 'cgan': 64}
MODELS = tuple(BATCH_SIZES)


def dense(n_in: int, n_out: int) -> int:
  return n_in * n_out + n_out


def simple_rnn(n_in: int, units: int) -> int:
  """Keras SimpleRNN: input kernel, recurrent kernel, one bias."""
  return n_in * units + units * units + units


def lstm(n_in: int, units: int) -> int:
  """Keras LSTM: four gates of a SimpleRNN's shape (one bias per gate, not PyTorch's two)."""
  return 4 * simple_rnn(n_in, units)


def mlp(n_in: int, widths: tuple, n_out: int) -> int:
  sizes = (n_in,) + widths + (n_out,)
  return sum(dense(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


# The counts each peer must reproduce; the cGAN's is generator + discriminator.
GENERATOR_PARAMS = CLASSES * LABEL_EMBED + mlp(NOISE + LABEL_EMBED, G_HIDDEN, IMAGE)
DISCRIMINATOR_PARAMS = CLASSES * LABEL_EMBED + mlp(IMAGE + LABEL_EMBED, D_HIDDEN, 1)
EXPECTED_PARAMS = {
    'spam_rnn': SPAM_VOCAB * SPAM_EMBED + simple_rnn(SPAM_EMBED, 32) + mlp(32, (256,), 1),
    'spam_lstm': SPAM_VOCAB * SPAM_EMBED + lstm(SPAM_EMBED, 32) + dense(32, 1),
    'textgen_rnn': simple_rnn(CHARS, 278) + dense(278, CHARS),
    'textgen_lstm': lstm(CHARS, 128) + dense(128, CHARS),
    'cgan': GENERATOR_PARAMS + DISCRIMINATOR_PARAMS,
}
# The numbers in the README and the study: a slip in the formulas above fails at import.
assert EXPECTED_PARAMS == {'spam_rnn': 261_361, 'spam_lstm': 260_657, 'textgen_rnn': 142_731,
                           'textgen_lstm': 141_045, 'cgan': 1_489_012 + 1_470_565}
assert (GENERATOR_PARAMS, DISCRIMINATOR_PARAMS) == (1_489_012, 1_470_565)


def make_batch(model: str, seed: int = 0) -> tuple:
  """One synthetic batch as numpy arrays: (ids, targets) or, for the cGAN, (images, labels)."""
  rng = np.random.default_rng(seed)
  b = BATCH_SIZES[model]
  if model.startswith('spam'):
    return (rng.integers(0, SPAM_VOCAB, (b, SPAM_LEN), dtype=np.int32),
            rng.integers(0, 2, (b,)).astype(np.float32))
  if model.startswith('textgen'):
    # One target per window: the character after it.
    return (rng.integers(0, CHARS, (b, WINDOW), dtype=np.int32),
            rng.integers(0, CHARS, (b,), dtype=np.int32))
  return (rng.uniform(-1, 1, (b, IMAGE)).astype(np.float32),
          rng.integers(0, CLASSES, (b,), dtype=np.int32))
