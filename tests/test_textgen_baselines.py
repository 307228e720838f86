"""Count-based baselines of the text generator, checked against bits/char worked out by hand."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from aml2_jax.datasets.char_corpus import CharCorpus, Vocabulary
from aml2_jax.textgen import baselines, interpolate
from conftest import REPO

# Vocabulary '\n' (id 0), 'a' (1), 'b' (2). Training text "aab\nab\n", held-out text "ab\nb".
TRAIN = np.array([1, 1, 2, 0, 1, 2, 0])
HELD = np.array([1, 2, 0, 2])
WINDOW = 1  # Targets: positions 1, 2, 3 of HELD, i.e. b after a, \n after b, b after \n.
POSITIONS = np.array([1, 2, 3])


def _bpc(*probs: float) -> float:
  return -sum(math.log2(p) for p in probs) / len(probs)


def test_unigram_is_add_one_frequencies():
  # Training counts \n 2, a 3, b 2 of 7: P(b) = P(\n) = (2 + 1) / (7 + 3).
  probs = baselines.unigram_probs(TRAIN, HELD[POSITIONS], 3)
  np.testing.assert_allclose(probs, [0.3, 0.3, 0.3])
  assert baselines.bits_per_char(probs) == pytest.approx(-math.log2(0.3))


def test_kneser_ney_of_order_two_by_hand():
  # Bigram counts: aa 1, ab 2, b\n 2, \na 1 -> n1 = 2, n2 = 2, D2 = 2 / (2 + 4) = 1/3.
  # Continuation counts (distinct left neighbours): a {a, \n} 2, b {a} 1, \n {b} 1 -> D1 = 1/2,
  # P1(\n) = P1(b) = (1/2 + 1/2 * 3 * 1/3) / 4 = 1/4, P1(a) = 1/2.
  # P(b | a) = (2 - 1/3) / 3 + (1/3) * 2 / 3 * P1(b) = 5/9 + 1/18 = 11/18.
  # P(\n | b) = (2 - 1/3) / 2 + (1/3) * 1 / 2 * P1(\n) = 5/6 + 1/24 = 7/8.
  # P(b | \n) = 0 + (1/3) * 1 / 1 * P1(b) = 1/12 (b never followed \n).
  model = baselines.KneserNey(TRAIN, order=2, vocab_size=3)
  assert model.discounts == pytest.approx([1 / 2, 1 / 3])
  probs = model.probs(HELD, POSITIONS)
  np.testing.assert_allclose(probs, [11 / 18, 7 / 8, 1 / 12])
  assert baselines.bits_per_char(probs) == pytest.approx(_bpc(11 / 18, 7 / 8, 1 / 12))


def test_add_k_by_hand():
  # (c(h x) + k) / (c(h) + 3 k) with k = 1: b|a (2+1)/(3+3), \n|b (2+1)/(2+3), b|\n (0+1)/(1+3).
  probs = baselines.add_k_probs(TRAIN, HELD, POSITIONS, 2, 3, k=1.0)
  np.testing.assert_allclose(probs, [1 / 2, 3 / 5, 1 / 4])


@pytest.mark.parametrize('order', [1, 3, 5])
def test_kneser_ney_sums_to_one_over_the_vocabulary(order):
  rng = np.random.default_rng(order)
  vocab_size = 7
  # The last symbol never occurs in training; no continuation count of 1 at order 1 (each symbol
  # follows all six), so that order takes the fallback discount.
  train = rng.integers(0, vocab_size - 1, 3000)
  model = baselines.KneserNey(train, order, vocab_size)
  for context in rng.integers(0, vocab_size, (20, order - 1)):
    # Every possible next symbol after the same context, one text per candidate.
    texts = np.concatenate([np.tile(context, (vocab_size, 1)),
                            np.arange(vocab_size)[:, None]], axis=1)
    probs = model.probs(texts.ravel(), np.arange(vocab_size) * order + order - 1)
    assert probs.sum() == pytest.approx(1.0) and np.all(probs > 0)


def test_baselines_score_the_same_windows_and_pick_k_on_validation():
  vocab = Vocabulary(('\n', 'a', 'b'))
  corpus = CharCorpus(vocab, TRAIN, HELD, np.array([0, 0, 1, 2, 0]))
  results = baselines.baselines(corpus, WINDOW, order=2)
  assert results['val_windows'] == 3 and results['test_windows'] == 4
  assert results['uniform']['val_bpc'] == pytest.approx(math.log2(3))
  assert results['kneser_ney_2']['val_bpc'] == pytest.approx(_bpc(11 / 18, 7 / 8, 1 / 12))
  by_k = results['add_k_2']['val_bpc_by_k']
  assert results['add_k_2']['k'] == min(baselines.ADD_K_GRID, key=lambda k: by_k[str(k)])
  assert results['add_k_2']['val_bpc'] == by_k[str(results['add_k_2']['k'])]


@pytest.mark.long
def test_command_prints_and_writes_the_json(tiny_sms_root, tmp_path):
  out = tmp_path / 'baselines.json'
  result = _run_module('--config=configs/textgen_lstm.py:smoke', f'--data_dir={tiny_sms_root}',
                       '--config.data.limit_messages=0', '--config.data.window=20',
                       f'--out={out}')
  assert result.returncode == 0, result.stderr
  written = json.loads(out.read_text())
  assert json.loads(result.stdout) == written
  assert written['split']['val_fraction'] == 0.1 and written['window'] == 20
  for name in ('unigram', 'kneser_ney_5', 'add_k_5'):
    assert 0 < written[name]['test_bpc'] < written['uniform']['test_bpc']


def _run_module(*args: str) -> subprocess.CompletedProcess:
  """`python -m aml2_jax.textgen.baselines ARGS` in a fresh process from the repository root."""
  return subprocess.run([sys.executable, '-m', 'aml2_jax.textgen.baselines', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_interpolation_weight_is_picked_on_validation_and_ends_are_the_two_models():
  rng = np.random.default_rng(0)
  network_p, ngram_p = rng.uniform(0.05, 0.9, 500), rng.uniform(0.05, 0.9, 500)
  nll = -np.log(network_p)
  assert interpolate.mixture_bpc(nll, ngram_p, 1.0) == pytest.approx(-np.mean(np.log2(network_p)))
  assert interpolate.mixture_bpc(nll, ngram_p, 0.0) == pytest.approx(-np.mean(np.log2(ngram_p)))
  weight, by_weight = interpolate.pick_weight(nll, ngram_p)
  assert by_weight[weight] == min(by_weight.values())
  # Two models that err on different targets: the mixture beats both.
  assert 0 < weight < 1 and by_weight[weight] < min(by_weight[0.0], by_weight[1.0])
