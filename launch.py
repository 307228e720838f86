"""Entry point: `python launch.py --config=configs/<name>.py [--workdir=DIR] [--mode=MODE]`.

Config fields are overridden with `--config.field=value`; `--config=configs/<name>.py:smoke`
picks the tiny variant. Modes: train (default, resumes from the workdir), eval, summary, and
the experiment's own (sample, predict). Problems a user can fix print one line and exit 2.
"""

import contextlib
import logging as std_logging
import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config name>).')
_MODE = flags.DEFINE_string('mode', 'train', 'train | eval | summary | sample | predict.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show tracebacks and library logs.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Join a multi-process run described by the cluster environment '
    '(SLURM, Open MPI, Cloud TPU, ...), as jax.distributed.initialize() reads it.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', 'Multi-process run: process 0\'s HOST:PORT (with --num_processes '
    'and --process_id).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'Multi-process run: processes in all.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, 'Multi-process run: this process, 0..N-1.')
_COORDINATOR_TIMEOUT = flags.DEFINE_integer(
    'coordinator_timeout', 60, 'Multi-process run: seconds to wait for every process to connect.')
_TEXT = flags.DEFINE_multi_string('text', [], 'predict: a message to classify (repeatable).')
_INPUT = flags.DEFINE_string('input', '', 'predict: a UTF-8 file, one message per line.')
_PROMPT = flags.DEFINE_string('prompt', '', 'sample (textgen): text to continue.')
_LENGTH = flags.DEFINE_integer('length', 200, 'sample (textgen): characters to generate.')
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'sample (textgen): 0 means greedy.')
_STOP_AT_END = flags.DEFINE_bool('stop_at_end', True,
                                 'sample (textgen): stop at the end-of-message character.')
_SEED = flags.DEFINE_integer('seed', 0, 'sample: sampling seed.')
_LABELS = flags.DEFINE_list('labels', [], 'sample (cgan): classes to draw, e.g. 0,3,9.')
_NUM_PER_CLASS = flags.DEFINE_integer('num_per_class', 10, 'sample (cgan): images per class.')
_OUT = flags.DEFINE_string('out', '', 'sample (cgan): output path, .png or .npz (both are written).')


def _config_name() -> str:
  path = config_flags.get_config_filename(flags.FLAGS['config'])
  name = Path(path.split(':')[0]).stem
  variant = path.split(':')[1] if ':' in path else ''
  return f'{name}_{variant}' if variant else name


def _mode_options():
  from aml2_jax.errors import UserError
  from aml2_jax.experiment import ModeOptions
  try:
    labels = tuple(int(label) for label in _LABELS.value)
  except ValueError as e:
    raise UserError(f'--labels={",".join(_LABELS.value)} must be integers 0-9, e.g. 0,3,9.') from e
  return ModeOptions(text=tuple(_TEXT.value), input=_INPUT.value, prompt=_PROMPT.value,
                     length=_LENGTH.value, temperature=_TEMPERATURE.value,
                     stop_at_end=_STOP_AT_END.value, seed=_SEED.value, labels=labels,
                     num_per_class=_NUM_PER_CLASS.value, out=_OUT.value)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, but a bad flag or config override is one line on stderr and exit 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    print(f'error: {_flag_error_line(e)}; see --helpshort and the config file\'s fields.',
          file=sys.stderr)
    sys.exit(2)


def _flag_error_line(error: Exception) -> str:
  text = str(error)
  if isinstance(error, (AttributeError, KeyError)):  # config_flags: a misspelt field.
    field = re.search(r"'\\?'?([\w.]+)", text)
    hint = re.search(r'Did you mean "([\w.]+)"', text)
    return (f'the config has no field {field.group(1) if field else text!r}'
            + (f' (did you mean {hint.group(1)!r}?)' if hint else ''))
  if 'Traceback' in text:  # An exception inside the config file: keep its last line.
    text = f'{text.split(":")[0]}: ' + [l for l in text.splitlines() if l.strip()][-1]
  return ' '.join(text.split())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _VERBOSE.value:
    logging.set_verbosity(logging.ERROR)  # orbax and absl chatter hides the progress bars.
    # A failed checkpoint write (e.g. a full disk) also leaves orbax's other write futures
    # failed; asyncio logs each as "exception was never retrieved" with a traceback, after the
    # one-line error has already said what happened.
    std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL)
  # Imported here so that `--help` and flag errors answer before JAX loads.
  from aml2_jax import experiment
  from aml2_jax.errors import UserError
  from aml2_jax.runtime import distributed, run_record, storage, workdir as workdir_lib
  from aml2_jax.training.loop import Interrupted
  try:
    distributed.initialize(distributed.Cluster(
        auto=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
        timeout_s=_COORDINATOR_TIMEOUT.value))
    workdir = workdir_lib.prepare_workdir(_WORKDIR.value or f'runs/{_config_name()}', _MODE.value)
    with storage.disk_errors():  # A write that no inner code named still gets one line.
      # run.json (command, commit, machine, versions, wall time) of every run that writes.
      record = (contextlib.nullcontext() if _MODE.value in workdir_lib.READ_ONLY_MODES
                else run_record.RunRecorder(workdir, _MODE.value))
      with record:
        experiment.run(_CONFIG.value, _MODE.value, workdir, _mode_options())
  except UserError as e:
    if _VERBOSE.value:
      raise
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    print(f'stopped: {e}', file=sys.stderr)
    sys.exit(130)


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main, flags_parser=parse_flags)
