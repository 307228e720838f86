"""What a run tells its user on the terminal: one place, so that multi-process runs speak once.

Library chatter goes through absl logging (quiet unless `--verbose`); what the user should read
(the data a run found, per-epoch metrics, where results went) goes through `say`, which prints
on process 0 only. Progress bars (on stderr, when it is a terminal) and the per-epoch lines are
made in `aml2_jax.runtime.metrics_logging` (`progress_bar`, `epoch_line`).
"""

import sys

import jax


def is_main_process() -> bool:
  """True on the process that writes logs, pictures and results (process 0)."""
  return jax.process_index() == 0


def say(message: str) -> None:
  """Prints a line for the user (stdout, flushed), on process 0 only."""
  if is_main_process():
    print(message, flush=True)


def warn(message: str) -> None:
  """Prints a note the user should not miss (stderr), on process 0 only."""
  if is_main_process():
    print(message, file=sys.stderr, flush=True)
