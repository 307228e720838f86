"""`--mode=predict`: P(spam) of messages given on the command line or in a UTF-8 file."""

import sys
from pathlib import Path

import numpy as np

from aml2_jax import console
from aml2_jax.errors import UserError
from aml2_jax.spam.models import make_model, spam_probability
from aml2_jax.spam.seeds import run_configs, seed_dir
from aml2_jax.spam.train import THRESHOLD, logits_fn, restore_for_eval


def read_messages(path: str) -> list[str]:
  """The messages of a UTF-8 file, one per line (empty lines are empty messages)."""
  try:
    raw = Path(path).read_bytes()
  except OSError as e:
    raise UserError(f'cannot read --input={path} ({e.strerror}); give a UTF-8 text file with '
                    'one message per line.') from None
  try:
    text = raw.decode('utf-8').removeprefix('\ufeff')
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    raise UserError(f'--input={path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x}); re-save '
                    'the file as UTF-8.') from None
  lines = text.split('\n')  # Not splitlines(): that also splits on \v, \f and U+2028.
  if lines[-1] == '':
    lines.pop()  # The final newline ends the last message; it does not start another.
  return [line.removesuffix('\r') for line in lines]


def preview(text: str, width: int = 60) -> str:
  """One printable line of a message, cut to `width`, safe for the terminal's encoding."""
  flat = ' '.join(text.split())
  flat = flat if len(flat) <= width else flat[:width - 3] + '...'
  encoding = sys.stdout.encoding or 'utf-8'
  return flat.encode(encoding, 'backslashreplace').decode(encoding) if flat else '(empty message)'


def predict(config, workdir: Path, options) -> list[float]:
  """Prints P(spam), the label and how many known words the model saw; returns P(spam)."""
  messages = list(options.text) + (read_messages(options.input) if options.input else [])
  if not messages:
    raise UserError('nothing to classify: give --text="a message" (repeatable) or --input=FILE '
                    '(UTF-8, one message per line).')
  run = run_configs(config)[0]
  params, tokenizer, _, _ = restore_for_eval(run, seed_dir(workdir, run.seed), workdir)
  ids = tokenizer.encode(messages, config.data.maxlen)
  (logits,) = logits_fn(make_model(run))(params, ids)
  probs = np.asarray(spam_probability(logits), np.float64)
  # Known words the model saw (the last maxlen of them): 0 explains a bare prior answer.
  known = [min(len(seq), config.data.maxlen) for seq in tokenizer.texts_to_sequences(messages)]
  lines = [f'{"P(spam)":>8}  {"label":<5}  {"known words":>11}  message']
  for prob, count, message in zip(probs, known, messages):
    label = 'spam' if prob > THRESHOLD else 'ham'
    lines.append(f'{prob:>8.4f}  {label:<5}  {count:>11}  {preview(message)}')
  console.say('\n'.join(lines))
  return probs.tolist()
