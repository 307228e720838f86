"""`--mode=sample`: continue a prompt with the best checkpoint of a trained workdir."""

from pathlib import Path

from aml2_jax import console
from aml2_jax.datasets import char_corpus
from aml2_jax.datasets.char_corpus import Vocabulary
from aml2_jax.errors import UserError
from aml2_jax.textgen import generate
from aml2_jax.textgen.models import make_model
from aml2_jax.textgen.train import SAMPLING_META, restore_best


def sample(config, workdir: Path, options) -> str:
  """Prints `options.prompt` and its continuation from the best checkpoint; returns the text."""
  if options.length < 0:
    raise UserError(f'--length={options.length} must be >= 0.')
  if options.temperature < 0:
    raise UserError(f'--temperature={options.temperature} must be >= 0 (0 = greedy).')
  vocab = Vocabulary.load(workdir / char_corpus.VOCAB_FILE)
  params, _ = restore_best(config, workdir, vocab, meta_keys=SAMPLING_META)
  _, _, dropped = generate.prompt_context(vocab, options.prompt)
  if dropped:
    console.warn(f'note: dropped characters not in the vocabulary from the prompt: {dropped!r}')
  sampler = generate.sampler_for(make_model(config, vocab.size), config.data.window)
  kept, text = generate.generate_text(sampler, params, vocab, options.prompt, options.length,
                                      options.temperature, options.seed, options.stop_at_end)
  console.say(kept + text)
  return kept + text
