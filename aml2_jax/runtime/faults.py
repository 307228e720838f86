"""Quieting orbax's noise after a failed save, and the tests' crash points (`AML2_CRASH_AT`)."""

import fnmatch
import logging
import os
import signal
import sys

CRASH_ENV = 'AML2_CRASH_AT'
_NOISE = ('Event loop is closed', 'sys.meta_path is None')


def _quiet() -> bool:
  """True when the launcher hides library logs (no --verbose): absl's logger is at ERROR."""
  try:
    return logging.getLogger('absl').getEffectiveLevel() >= logging.ERROR
  except Exception:  # pylint: disable=broad-except  (interpreter shutdown)
    return True


def _keep_record(record: logging.LogRecord) -> bool:
  """Drops orbax's own log records when quiet: a failure it logs is re-raised to the caller."""
  return not (_quiet() and f'{os.sep}orbax{os.sep}' in (record.pathname or ''))


def install_quiet_hooks() -> None:
  """Hides, unless --verbose, the tracebacks orbax's writers print after a failed save.

  The failure itself reaches the user as one line; the rest is noise. Idempotent.
  """
  logging.getLogger('absl').addFilter(_keep_record)  # Added once: addFilter skips a repeat.
  if getattr(sys.unraisablehook, 'aml2_quiet', False):
    return
  previous = sys.unraisablehook

  def hook(unraisable) -> None:
    # Orbax's orphaned writes after a failed save, and their clean-up at exit, are noise.
    if not (_quiet() and any(noise in str(unraisable.exc_value) for noise in _NOISE)):
      previous(unraisable)
  hook.aml2_quiet = True
  sys.unraisablehook = hook


def crash_armed(name: str) -> bool:
  """Whether `$AML2_CRASH_AT` (an fnmatch pattern) names the crash point `name`."""
  pattern = os.environ.get(CRASH_ENV)
  return bool(pattern and fnmatch.fnmatchcase(name, pattern))


def crash_point(name: str) -> None:
  """Tests only: SIGKILLs this process at `name` if `crash_armed(name)`; else does nothing.

  Names: `checkpoint:<step dir>` (once complete), `write:<path>` (before the rename), and the
  phases of the cGAN's evaluation.
  """
  if crash_armed(name):
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
