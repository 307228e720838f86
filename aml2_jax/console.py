"""What a run tells its user: on process 0 only, so that a multi-process run speaks once.

Library chatter goes through absl logging (quiet unless `--verbose`).
"""

import sys

import jax


def is_main_process() -> bool:
  """True on the process that writes logs, pictures and results (process 0)."""
  return jax.process_index() == 0


def say(message: str) -> None:
  """Prints a line for the user on stdout (process 0 only)."""
  if is_main_process():
    print(message, flush=True)


def warn(message: str) -> None:
  """Prints a note the user should not miss on stderr (process 0 only)."""
  if is_main_process():
    print(message, file=sys.stderr, flush=True)
