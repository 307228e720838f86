"""Writing text with a trained character model: the sampler and how a prompt is read."""

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aml2_jax.datasets.char_corpus import Vocabulary
from aml2_jax.textgen.models import CharModel


def pick_next(logits: jax.Array, key: jax.Array, temperature: float) -> jax.Array:
  """The next id from logits [vocab]: argmax at temperature 0, else a draw at temperature T."""
  if temperature == 0:
    return jnp.argmax(logits)
  return jax.random.categorical(key, logits / temperature)


class CharSampler:
  """Writes text a character at a time, each from the last `window` characters at most, from a
  zero state as in training (docs/textgen.md#commands, "Sampling rule")."""

  def __init__(self, model: CharModel, window: int):
    last_step = model.clone(all_steps=False, dropout=0.0)
    self.window = window
    self._step = jax.jit(lambda params, carry, ids: last_step.apply(
        {'params': params}, ids, carry))
    self._from_window = jax.jit(lambda params, ids: last_step.apply(
        {'params': params}, ids)[1])
    self._pick = jax.jit(pick_next, static_argnums=2)

  def generate(self, params: Any, context: Sequence[int], length: int, temperature: float,
               seed: int, stop_id: int | None = None) -> list[int]:
    """Up to `length` new ids continuing `context` (non-empty), stopping before `stop_id`."""
    if not context:
      raise ValueError('context must hold at least one id (e.g. the end character)')
    history = [int(i) for i in context]
    key = jax.random.key(seed)
    carry, logits = None, None  # None: `Recurrent` starts from zeros.
    if len(history) <= self.window:  # Shorter than a window: step the carried state per char.
      for char_id in history:
        carry, logits = self._step(params, carry, np.array([[char_id]], np.int32))
    generated = []
    for i in range(length):
      if len(history) > self.window:
        logits = self._from_window(params, np.array([history[-self.window:]], np.int32))
      next_id = int(self._pick(logits[0], jax.random.fold_in(key, i), float(temperature)))
      if next_id == stop_id:
        break
      generated.append(next_id)
      history.append(next_id)
      if len(history) <= self.window:
        carry, logits = self._step(params, carry, np.array([[next_id]], np.int32))
    return generated


@functools.cache
def sampler_for(model: CharModel, window: int) -> CharSampler:
  """The sampler of `model`, built (and so compiled) once per model and process."""
  return CharSampler(model, window)


def prompt_context(vocab: Vocabulary, prompt: str) -> tuple[list[int], str, str]:
  """(ids: the end character then the prompt, the prompt as used, characters dropped from it).

  A prompt begins a new message, as after any message of the corpus; characters outside the
  vocabulary are dropped.
  """
  kept, dropped = vocab.known(prompt)
  return [vocab.end_id] + vocab.encode(kept).tolist(), kept, dropped


def generate_text(sampler: CharSampler, params, vocab: Vocabulary, prompt: str, length: int,
                  temperature: float, seed: int, stop_at_end: bool = True) -> tuple[str, str]:
  """(the prompt as used, the generated continuation); see `prompt_context` for the rule."""
  context, kept, _ = prompt_context(vocab, prompt)
  ids = sampler.generate(params, context, length, temperature, seed,
                         stop_id=vocab.end_id if stop_at_end else None)
  return kept, vocab.decode(ids)
