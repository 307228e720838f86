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
  """Writes text a character at a time, seeing what the model saw in training.

  The model was trained on windows of `window` characters starting from a zero state, so each
  character is predicted from the last min(len(history), window) characters, from a zero state:
  while the history is shorter than a window, one recurrent step per character on the carried
  state (exactly a zero-state run over the whole history); from then on, a fresh run over the
  last `window` characters. Its functions are jitted once per sampler; params are arguments.
  """

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
    """Up to `length` new ids continuing `context` (non-empty ids), reproducible for a seed.

    Stops before `stop_id` if it is drawn (it is not returned).
    """
    if not context:
      raise ValueError('context must hold at least one id (e.g. the end character)')
    history = [int(i) for i in context]
    key = jax.random.key(seed)
    carry, logits = None, None
    if len(history) <= self.window:
      carry, logits = self._prime(params, history)
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

  def _prime(self, params, history: list[int]):
    """Carry and next-char logits after the history, one step per character from zero."""
    carry, logits = None, None  # None: `Recurrent` starts from zeros.
    for char_id in history:
      carry, logits = self._step(params, carry, np.array([[char_id]], np.int32))
    return carry, logits


@functools.cache
def sampler_for(model: CharModel, window: int) -> CharSampler:
  """The sampler of `model`, built (and so compiled) once per model and process."""
  return CharSampler(model, window)


def prompt_context(vocab: Vocabulary, prompt: str) -> tuple[list[int], str, str]:
  """The ids a prompt gives the model, the prompt as used, and the characters dropped from it.

  The rule: a prompt begins a new message, so the context is the end character (the close of a
  previous message, as everywhere in the corpus) followed by the prompt. An empty prompt is just
  that end character: the model writes a whole message. A prompt shorter than the window is used
  as it is (the model runs from a zero state over it, as over the start of a training window);
  of a longer one only the last `window` characters matter. Characters outside the vocabulary
  are dropped (and reported); a newline in the prompt is the end character and ends a message.
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
