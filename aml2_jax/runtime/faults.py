"""What a run does about faults besides reporting them: quiet shutdown noise, and crash points.

`install_quiet_hooks` hides, unless `--verbose`, the tracebacks orbax's background writers print
after a save has already failed (the failure itself reaches the user as one line).
`crash_point` lets tests kill a run at an exact place (`AML2_CRASH_AT`); it does nothing when the
variable is unset.
"""

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


class _OrbaxFilter(logging.Filter):
  """Drops orbax's own log records when quiet: a failure it logs is re-raised to the caller."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (_quiet() and f'{os.sep}orbax{os.sep}' in (record.pathname or ''))


def _unraisable_hook(previous):
  def hook(unraisable) -> None:
    text = str(unraisable.exc_value)
    if _quiet() and any(noise in text for noise in _NOISE):
      return  # Orbax's orphaned writes after a failed save, or their clean-up at exit.
    previous(unraisable)
  hook.aml2_quiet = True
  return hook


def install_quiet_hooks() -> None:
  """Hides, when quiet, the noise orbax's background writers make after a failed save.

  When one write of an async save fails, orbax logs it with tracebacks from several threads, the
  other writes' callbacks hit a closed event loop, and their coroutines complain again at exit;
  none of it is news once the failure reaches the caller as one line. Idempotent.
  """
  absl_logger = logging.getLogger('absl')
  if not any(isinstance(f, _OrbaxFilter) for f in absl_logger.filters):
    absl_logger.addFilter(_OrbaxFilter())
  if not getattr(sys.unraisablehook, 'aml2_quiet', False):
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)


def crash_point(name: str) -> None:
  """SIGKILLs this process if `name` matches `$AML2_CRASH_AT` (an fnmatch pattern).

  For tests only: it cuts a run at an exact place (`checkpoint:<step dir>` once a checkpoint is
  complete, `write:<path>` between writing a file's temporary copy and renaming it, phases of
  the cGAN's evaluation). Nothing happens when the variable is unset.
  """
  pattern = os.environ.get(CRASH_ENV)
  if pattern and fnmatch.fnmatchcase(name, pattern):
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def crash_armed(name: str) -> bool:
  """Whether `crash_point(name)` would kill (to cut a write in the middle first)."""
  pattern = os.environ.get(CRASH_ENV)
  return bool(pattern and fnmatch.fnmatchcase(name, pattern))
