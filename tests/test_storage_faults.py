"""Storage faults: a full, read-only or failing disk, damaged checkpoints, kills while writing
or evaluating, and wrong paths. Each fault must end in one clear line (exit 2), lose nothing that
was saved, and be recovered from by the same command where it can be.

Real faults where the platform allows: a small tmpfs fills up for real and read-only bind mounts
refuse writes (both need root; otherwise those tests skip and the injected-error tests below
cover the same code). Kills are real SIGKILLs, placed exactly with `AML2_CRASH_AT`
(`aml2_jax.runtime.faults.crash_point`).
"""

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from aml2_jax import jsonio
from aml2_jax.training import checkpoint_integrity, checkpointing

from aml2_jax.training import restore as restore_lib
from aml2_jax.runtime import faults, storage, workdir as workdir_lib
from aml2_jax.training.checkpointing import Checkpointer, DamagedCheckpoint
from aml2_jax.runtime.metrics_logging import MetricLogger, write_json
from aml2_jax.runtime.storage import StorageError
from conftest import REPO, launch
from test_train_loop import loop_config, regression_task, run

TRAIN = 'python launch.py --config=configs/regression.py'
# Tests that inject faults or train are in the long tier; pure checks stay in the default one.


# --- Helpers --------------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(*commands: list[str], target: Path):
  """Runs mount `commands` (root only, else the test skips) and unmounts `target` afterwards."""
  if os.geteuid() != 0:
    pytest.skip('mounting needs root; the injected-error tests cover this code')
  target.mkdir(parents=True, exist_ok=True)
  try:
    for command in commands:
      done = subprocess.run(command, capture_output=True, text=True)
      if done.returncode:
        pytest.skip(f'cannot mount here: {done.stderr.strip()}')
    yield target
  finally:
    if subprocess.run(['umount', str(target)], capture_output=True).returncode:
      subprocess.run(['umount', '-l', str(target)], capture_output=True)  # Busy: detach it.


def tmpfs(target: Path, size: str):
  """A real, small file system at `target` that fills up."""
  return mounted(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(target)],
                 target=target)


def read_only(source: Path, target: Path):
  """`source`, seen read-only at `target` (a read-only bind mount)."""
  return mounted(['mount', '--bind', str(source), str(target)],
                 ['mount', '-o', 'remount,ro,bind', str(target)], target=target)


def error_lines(stderr: str) -> list[str]:
  """What stderr says besides progress bars, warnings and notes."""
  lines = [l.strip() for l in re.split(r'[\r\n]', stderr) if l.strip()]
  return [l for l in lines if not re.search(r'\|\s*\d+/\d+ \[|^(warning|note):', l)]


def assert_one_clear_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
  """Exit 2, no traceback, and exactly one `error:` line holding every fragment."""
  assert done.returncode == 2, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  lines = error_lines(done.stderr)
  assert len(lines) == 1 and lines[0].startswith('error: '), lines
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


@pytest.fixture(name='pristine', scope='module')
def fixture_pristine(tmp_path_factory) -> dict:
  """Regression-task workdirs trained once: 'two' (checkpoints 12 and 24), 'only' (24 alone),
  and the final params of uninterrupted 2- and 3-epoch runs."""
  root = tmp_path_factory.mktemp('pristine')
  run(regression_task(), loop_config(2), root / 'two')
  run(regression_task(), loop_config(2, keep_checkpoints=1), root / 'only')
  return {'two': root / 'two', 'only': root / 'only',
          2: np.asarray(run(regression_task(), loop_config(2), root / 'straight2').params),
          3: np.asarray(run(regression_task(), loop_config(3), root / 'straight3').params)}


def copy(pristine: dict, kind: str, tmp_path: Path) -> Path:
  """A fresh copy of a pristine workdir."""
  return Path(shutil.copytree(pristine[kind], tmp_path / kind))


def restore(workdir: Path, **kwargs) -> checkpointing.Found:
  """What eval / sample / predict restore (the regression task's state)."""
  return restore_lib.restore_trained(workdir, lambda: regression_task().state,
                                     {'experiment': 'regression'}, train_command=TRAIN, **kwargs)


def step_dirs(workdir: Path) -> list[str]:
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir() if not p.name.startswith('.'))


# --- Damaged checkpoints ----------------------------------------------------------------------


def _files(step_dir: Path, under: str = '') -> list[Path]:
  return sorted(p for p in (step_dir / under).rglob('*')
                if p.is_file() and p.name != checkpoint_integrity.MANIFEST)


def zero_array_bytes(step_dir: Path) -> None:
  """4 KB (or half the file, if smaller) of zeros inside the largest array data file."""
  path = max(_files(step_dir, 'state'), key=lambda p: (('/d/' in str(p)), p.stat().st_size))
  data = bytearray(path.read_bytes())
  width = min(4096, len(data) // 2)
  data[len(data) // 4:len(data) // 4 + width] = bytes(width)
  path.write_bytes(bytes(data))


def truncate_files(step_dir: Path) -> None:
  """Every file of the step cut in half (a copy or a disk that gave up half way)."""
  for path in _files(step_dir):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def remove_a_file(step_dir: Path) -> None:
  next(p for p in _files(step_dir, 'state') if '/d/' in str(p)).unlink()


def garble_metadata(step_dir: Path) -> None:
  """The state's tree metadata (JSON) overwritten in the middle."""
  path = step_dir / 'state' / '_METADATA'
  data = bytearray(path.read_bytes())
  data[10:60] = b'\x00' * 50
  path.write_bytes(bytes(data))


DAMAGE = {'zeroed array bytes': zero_array_bytes, 'truncated files': truncate_files,
          'a missing file': remove_a_file, 'corrupted metadata': garble_metadata}


@pytest.mark.parametrize('damage', DAMAGE)
@pytest.mark.long
def test_train_resumes_from_the_newest_intact_checkpoint_and_moves_the_damaged_one_aside(
    damage, pristine, tmp_path, capsys):
  workdir = copy(pristine, 'two', tmp_path)  # Checkpoints 12 and 24.
  DAMAGE[damage](workdir / 'checkpoints' / '24')
  kept = sorted(p.read_bytes() for p in (workdir / 'checkpoints' / '24').rglob('*') if p.is_file())
  resumed = run(regression_task(), loop_config(3), workdir)
  out = capsys.readouterr()
  assert re.search(r'checkpoint step 24 in \S+ is damaged \(.+\); moved it to \S+/24\.damaged',
                   out.err), out.err
  assert 'resuming from step 12 (epoch 2 of 3)' in out.out
  np.testing.assert_array_equal(resumed.params, pristine[3])  # Exactly as if never damaged.
  assert step_dirs(workdir) == ['24', '24.damaged', '36']  # Moved aside, not deleted.
  moved = workdir / 'checkpoints' / '24.damaged'
  assert sorted(p.read_bytes() for p in moved.rglob('*') if p.is_file()) == kept


@pytest.mark.parametrize('damage', DAMAGE)
@pytest.mark.long
def test_restore_moves_a_damaged_latest_aside_and_refuses_when_none_is_intact(
    damage, pristine, tmp_path, capsys):
  """Eval, sample and predict follow training's policy: moved aside, the next one used."""
  workdir = copy(pristine, 'two', tmp_path)
  DAMAGE[damage](workdir / 'checkpoints' / '24')
  restored = restore(workdir)
  assert restored.step == 12
  assert re.search(r'warning: checkpoint step 24 in \S+ is damaged \(.+\); moved it to '
                   r'\S+/24\.damaged, using the next intact one\.', capsys.readouterr().err)
  assert step_dirs(workdir) == ['12', '24.damaged']
  only = copy(pristine, 'only', tmp_path)
  DAMAGE[damage](only / 'checkpoints' / '24')
  with pytest.raises(checkpointing.UserError) as raised:
    restore(only)
  message = str(raised.value)
  assert re.fullmatch(r'no intact checkpoint is left in \S+/checkpoints \(the damaged ones are '
                      rf'kept aside\); retrain: {TRAIN} --workdir=\S+', message), message
  assert step_dirs(only) == ['24.damaged']


@pytest.mark.long
def test_training_starts_over_when_its_only_checkpoint_is_damaged(pristine, tmp_path, capsys):
  workdir = copy(pristine, 'only', tmp_path)
  truncate_files(workdir / 'checkpoints' / '24')
  state = run(regression_task(), loop_config(2), workdir)
  assert 'no intact checkpoint is left' in capsys.readouterr().err
  np.testing.assert_array_equal(state.params, pristine[2])
  assert step_dirs(workdir) == ['12', '24', '24.damaged']


@pytest.mark.long
def test_a_damaged_best_checkpoint_is_moved_aside_and_the_next_best_used(tmp_path, capsys):
  workdir = tmp_path / 'run'
  ckpt = Checkpointer(workdir / 'checkpoints', keep=4, best_metric='val_loss')
  state = regression_task().state
  for step, loss in ((1, 0.2), (2, 0.1), (3, 0.5), (4, 0.6)):  # Best 2, next best 1.
    ckpt.save(step, {'state': state}, {'experiment': 'regression'}, {'val_loss': loss})
  ckpt.close()
  assert restore(workdir, best_metric='val_loss').step == 2
  zero_array_bytes(workdir / 'checkpoints' / '2')
  assert restore(workdir, best_metric='val_loss').step == 1  # Orbax's next best, not the newest.
  assert re.search(r'checkpoint step 2 in \S+ is damaged \(.+\); moved it to \S+/2\.damaged',
                   capsys.readouterr().err)
  assert step_dirs(workdir) == ['1', '2.damaged', '3', '4']


# Orbax's other reads of the damaged step end on a closed event loop (hidden by the launcher).
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.long
def test_without_a_manifest_damage_is_still_told_from_a_config_mismatch(pristine, tmp_path,
                                                                        capsys):
  """Steps saved before manifests existed (or cut off before theirs): orbax's own errors are
  classified. Files that cannot be read are damage; a shape that differs is a mismatch."""
  workdir = copy(pristine, 'two', tmp_path)
  for step in (12, 24):
    (workdir / 'checkpoints' / str(step) / checkpoint_integrity.MANIFEST).unlink()
  for path in _files(workdir / 'checkpoints' / '24', 'state'):
    if '/d/' in str(path):
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  assert restore(workdir).step == 12
  assert re.search(r'step 24 .* is damaged \(.*(range|Byte).*\)', capsys.readouterr().err)
  bigger = lambda: regression_task().state.replace(params=jnp.zeros(4))
  with pytest.raises(checkpointing.UserError, match="does not fit this config's model") as raised:
    restore_lib.restore_trained(workdir, bigger, {'experiment': 'regression'},
                                  train_command=TRAIN)
  assert not isinstance(raised.value, DamagedCheckpoint)


@pytest.mark.long
def test_a_manifest_survives_later_saves_and_covers_every_file(tmp_path):
  workdir = tmp_path / 'run'
  run(regression_task(), loop_config(3, keep_checkpoints=5), workdir)
  ckpt = Checkpointer(workdir / 'checkpoints')
  assert ckpt.all_steps() == [12, 24, 36]
  assert [ckpt.verify(step) for step in ckpt.all_steps()] == [None, None, None]
  ckpt.close()
  manifest = json.loads((workdir / 'checkpoints' / '12' / checkpoint_integrity.MANIFEST).read_text())
  files = {str(p.relative_to(workdir / 'checkpoints' / '12'))
           for p in _files(workdir / 'checkpoints' / '12')}
  assert set(manifest['files']) == files and len(files) > 10


# --- Write errors: checkpoints ----------------------------------------------------------------


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EIO])
@pytest.mark.long
def test_a_failed_background_save_is_one_storage_error_and_keeps_the_previous_checkpoint(
    code, pristine, tmp_path, monkeypatch):
  """Injected: what tensorstore reports when orbax's background writer fails (any platform)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  workdir = copy(pristine, 'two', tmp_path)
  real_save, real_wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished
  failing = {}

  def save(self, step, *args, **kwargs):
    if step != 36:
      return real_save(self, step, *args, **kwargs)
    partial = Path(self.directory) / '36.orbax-checkpoint-tmp' / 'state'
    partial.mkdir(parents=True)
    (partial / 'half').write_bytes(b'\0' * 100)  # What the writer got through before failing.
    failing['error'] = ValueError(f'RESOURCE_EXHAUSTED: Error writing "params/0" in OCDBT database'
                                  f': Failed to write: {os.strerror(code)} '
                                  f"[os_error_code='{code}']")
    return True

  def wait(self):
    if 'error' in failing:
      raise failing.pop('error')
    return real_wait(self)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  monkeypatch.setattr(ocp.CheckpointManager, 'wait_until_finished', wait)
  with pytest.raises(StorageError) as raised:
    run(regression_task(), loop_config(3), workdir)
  assert raised.value.errno == code
  message = str(raised.value)
  assert re.fullmatch(rf'cannot write {workdir}/checkpoints/36: {os.strerror(code)} '
                      rf'\({errno.errorcode[code]}\); .+; the newest complete checkpoint, step 24, '
                      r'is intact: the same command resumes from it\.', message), message
  monkeypatch.undo()
  assert step_dirs(workdir) == ['12', '24']  # The partial step's temporary folder is gone.
  assert restore(workdir).step == 24


@pytest.mark.long
def test_a_full_disk_during_training_is_one_line_and_the_last_checkpoint_restores(
    tmp_path, tiny_sms_root):
  """A full disk, for real: the spam smoke config on a small tmpfs that fills up."""
  with tmpfs(tmp_path / 'disk', '2000k') as disk:
    done = launch('--config=configs/spam_rnn.py:smoke', f'--config.data.dir={tiny_sms_root}',
                  f'--workdir={disk / "run"}')  # 2 epochs: the second save fills it.
    line = assert_one_clear_line(done, 'No space left on device (ENOSPC)',
                                 'free space on that disk or choose another --workdir',
                                 'is intact: the same command resumes from it')
    kept = int(re.search(r'newest complete checkpoint, step (\d+)', line).group(1))
    ckpt = Checkpointer(disk / 'run' / 'seed_0' / 'checkpoints')
    try:
      assert ckpt.all_steps() == [kept] and ckpt.verify(kept) is None
      meta = ckpt.read_meta(kept)
    finally:
      ckpt.close()
    assert meta['experiment'] == 'spam'
    assert not list((disk / 'run' / 'seed_0' / 'checkpoints').glob('*tmp*'))


@pytest.mark.long
def test_a_read_only_disk_fails_a_save_at_once_and_still_restores(pristine, tmp_path, capsys):
  workdir = copy(pristine, 'two', tmp_path)
  with read_only(workdir, tmp_path / 'ro') as ro:
    assert restore(ro).step == 24  # Reading needs no write.
    truncate_files(workdir / 'checkpoints' / '24')  # Seen through the read-only mount.
    assert restore(ro).step == 12
    assert 'is damaged' in capsys.readouterr().err and step_dirs(workdir) == ['12', '24']
    ckpt = Checkpointer(ro / 'checkpoints')
    try:
      with pytest.raises(StorageError, match=r'Read-only file system \(EROFS\)'):
        ckpt.save(36, {'state': regression_task().state}, {'experiment': 'regression'})
    finally:
      ckpt.close()  # No save in flight: returns at once (orbax would wait minutes for it).
    for write in (lambda: MetricLogger(ro), lambda: write_json(ro / 'results.json', {'a': 1})):
      with pytest.raises(StorageError, match=r'EROFS\); the file system is read-only: choose a '
                                             r'writable --workdir\.'):
        write()


# --- Write errors: logs, pictures, results --------------------------------------------------


def _fill(disk: Path) -> None:
  """Writes until the disk is full."""
  with open(disk / 'filler', 'wb') as f:
    try:
      while True:
        f.write(b'\1' * (1 << 16))
        f.flush()
    except OSError as e:
      assert e.errno == errno.ENOSPC


def _writers(workdir: Path) -> dict:
  from aml2_jax.plotting.curves import plot_curves  # pylint: disable=g-import-not-at-top
  from aml2_jax.plotting.image_grid import save_labelled_grid  # pylint: disable=g-import-not-at-top
  from aml2_jax.training.config import base_config  # pylint: disable=g-import-not-at-top
  from aml2_jax.runtime.workdir import write_config  # pylint: disable=g-import-not-at-top

  def metrics():
    logger = MetricLogger(workdir)
    try:
      logger.scalars(1, {'loss': 1.0}, epoch=1)
    finally:
      logger.close()

  images = np.zeros((2, 3, 28, 28), np.uint8)
  return {
      'results.json': lambda: write_json(workdir / 'results.json', {'new': list(range(5000))}),
      'config.json': lambda: write_config(workdir, base_config('x')),
      'curves.png': lambda: plot_curves(workdir, ['loss']),
      'samples/grid.png': lambda: save_labelled_grid(images, ['a', 'b'],
                                                     workdir / 'samples' / 'grid.png'),
      'tensorboard': metrics,
  }


class _FullDisk:
  """A file whose writes fail as on a full disk (the injected twin of a full tmpfs)."""

  def __init__(self, file):
    self._file = file

  def write(self, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def __getattr__(self, name):
    return getattr(self._file, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._file.close()


def inject_full_disk(disk: Path, monkeypatch) -> None:
  """From now on, every file opened for writing under `disk` fails its writes with ENOSPC (the
  injected twin of a full tmpfs, for any platform)."""
  real_open = open

  def open_on_full_disk(file, mode='r', *args, **kwargs):
    opened = real_open(file, mode, *args, **kwargs)
    writing = any(c in mode for c in 'wax+') and str(file).startswith(str(disk))
    return _FullDisk(opened) if writing else opened

  monkeypatch.setattr('builtins.open', open_on_full_disk)


@pytest.mark.parametrize('how', ['injected', 'full tmpfs'])
@pytest.mark.parametrize('what', ['results.json', 'config.json', 'curves.png', 'samples/grid.png',
                                  'tensorboard'])
@pytest.mark.long
def test_every_file_a_run_writes_fails_on_a_full_disk_as_one_storage_error(what, how, tmp_path,
                                                                            monkeypatch):
  with contextlib.ExitStack() as stack:
    if how == 'full tmpfs':
      disk = stack.enter_context(tmpfs(tmp_path / 'disk', '256k'))
    else:
      disk = tmp_path / 'disk'
      disk.mkdir()
    (disk / 'samples').mkdir()
    (disk / 'metrics.jsonl').write_text('{"step": 1, "epoch": 1, "loss": 1.0}\n')
    for name in ('results.json', 'config.json', 'curves.png', 'samples/grid.png'):
      (disk / name).write_text('{"old": true}\n')  # What an earlier run left.
    writers = _writers(disk)
    if how == 'full tmpfs':
      _fill(disk)
    else:
      inject_full_disk(disk, monkeypatch)
    with pytest.raises(StorageError) as raised:
      writers[what]()
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value).startswith(f'cannot write {disk / what}'), raised.value
    assert 'free space on that disk or choose another --workdir' in str(raised.value)
    if what != 'tensorboard':
      assert (disk / what).read_text() == '{"old": true}\n'  # Not replaced by half a file.
    assert not list(disk.rglob('.*tmp*'))  # No temporary file left taking space.


@pytest.mark.long
def test_an_io_error_on_a_results_file_is_one_storage_error(tmp_path, monkeypatch):
  """Injected (any platform): EIO from the disk while writing results.json."""
  (tmp_path / 'results.json').write_text('{"old": true}\n')
  real_fsync = os.fsync

  def fsync(fd):
    raise OSError(errno.EIO, os.strerror(errno.EIO))

  monkeypatch.setattr(os, 'fsync', fsync)
  with pytest.raises(StorageError, match=r'Input/output error \(EIO\); the disk reported an I/O '
                                         r'error: check it \(dmesg\)'):
    write_json(tmp_path / 'results.json', {'new': True})
  monkeypatch.setattr(os, 'fsync', real_fsync)
  assert (tmp_path / 'results.json').read_text() == '{"old": true}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['results.json']


def test_the_launchers_safety_net_turns_a_disk_error_anywhere_into_one_storage_error():
  """`storage.disk_errors()` (for launch.py) catches writes no other code wrapped."""
  with pytest.raises(StorageError, match=r'^cannot write /w/vocab\.json: No space left on device '
                                         r'\(ENOSPC\); free space on that disk or choose another '
                                         r'--workdir\.$'):
    with storage.disk_errors():
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/w/vocab.json')
  with pytest.raises(FileNotFoundError):  # Not a fault of the disk: it passes unchanged.
    with storage.disk_errors():
      raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), '/w/missing')


# --- Kills while writing --------------------------------------------------------------------


def _python(code: str, crash_at: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, faults.CRASH_ENV: crash_at}, timeout=120)


@pytest.mark.long
def test_a_kill_while_results_json_is_written_leaves_the_previous_file_whole(tmp_path):
  path = tmp_path / 'results.json'
  path.write_text('{"accuracy": 0.5}\n')
  done = _python('from aml2_jax.runtime.metrics_logging import write_json; '
                 f'write_json({str(path)!r}, {{"accuracy": 0.9, "pad": list(range(10000))}})',
                 crash_at=f'write:{path}')
  assert done.returncode == -9, done.stderr  # SIGKILL between writing and renaming.
  assert json.loads(path.read_text()) == {'accuracy': 0.5}


@pytest.mark.long
def test_a_kill_while_metrics_jsonl_is_written_leaves_a_torn_line_that_resuming_drops(
    tmp_path, capsys):
  from aml2_jax.plotting.curves import plot_curves  # pylint: disable=g-import-not-at-top
  logger = MetricLogger(tmp_path)
  logger.scalars(12, {'loss': 1.0}, epoch=1)
  logger.close()
  done = _python('from aml2_jax.runtime.metrics_logging import MetricLogger; '
                 f'MetricLogger({str(tmp_path)!r}).scalars(24, {{"loss": 0.5}}, epoch=2)',
                 crash_at=f'write:{tmp_path / "metrics.jsonl"}')
  assert done.returncode == -9, done.stderr
  text = (tmp_path / 'metrics.jsonl').read_text()
  assert not text.endswith('\n')  # The kill cut the second line.
  assert jsonio.read_jsonl(tmp_path / 'metrics.jsonl') == [{'step': 12, 'epoch': 1, 'loss': 1.0}]
  plot_curves(tmp_path, ['loss'])  # Readers skip the torn line even before it is repaired.
  logger = MetricLogger(tmp_path)  # What a resumed run does first.
  assert 'dropped the torn last line' in capsys.readouterr().err
  logger.scalars(24, {'loss': 0.5}, epoch=2)
  logger.close()
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(line)['step'] for line in lines] == [12, 24]


# --- A killed cGAN evaluation finishes on the next run ------------------------------------------


# A tiny cGAN (2 steps, checkpoints after each) whose training ends with the full evaluation.
CGAN_OVERRIDES = {'data.limit': 128, 'steps_per_call': 1, 'checkpoint_every_steps': 1,
                  'model.g_hidden': (32,), 'model.d_hidden': (32,), 'eval.num_per_class': 10,
                  'eval.cas_num_per_class': 10}


def _cgan_args(workdir: Path, data_root: Path) -> list[str]:
  overrides = [f'--config.{k}={str(v).replace(" ", "")}' for k, v in CGAN_OVERRIDES.items()]
  return ['--config=configs/cgan.py:smoke', f'--workdir={workdir}',
          f'--config.data.dir={data_root}', *overrides]


def _cgan_config():
  """The config `_cgan_args` gives, for calling the modes in this process."""
  from aml2_jax.training.config import load_config  # pylint: disable=g-import-not-at-top
  config = load_config('cgan', 'smoke')
  for name, value in CGAN_OVERRIDES.items():
    *groups, last = name.split('.')
    (config['.'.join(groups)] if groups else config)[last] = value
  return config


@pytest.fixture(name='evaluated_cgan', scope='module')
def fixture_evaluated_cgan(tiny_fmnist_root, tmp_path_factory) -> dict:
  """The same cGAN command three times: SIGKILLed while the judge trains (after its checkpoint;
  the judge comes before the GAN, whose epochs it checks), then after the GAN's training and the
  scoring, while the CAS classifier trains (after its checkpoint), then to the end."""
  workdir = tmp_path_factory.mktemp('cgan_eval') / 'cgan'
  runs = {}
  for name, crash_at in (('judge', 'checkpoint:*/fmnist_classifier/checkpoints/*'),
                         ('cas', 'checkpoint:*/cas_classifier/checkpoints/*'), ('last', '')):
    runs[name] = launch(*_cgan_args(workdir, tiny_fmnist_root), env={faults.CRASH_ENV: crash_at})
    runs[f'{name}_files'] = sorted(str(p.relative_to(workdir.parent))
                                   for p in workdir.parent.rglob('*') if p.is_file())
  return {'workdir': workdir, **runs}


@pytest.mark.long
def test_a_killed_evaluation_finishes_on_the_next_run_without_retraining(evaluated_cgan):
  workdir = evaluated_cgan['workdir']
  judge, cas, last = evaluated_cgan['judge'], evaluated_cgan['cas'], evaluated_cgan['last']
  assert judge.returncode == -9 and cas.returncode == -9, (judge.stderr[-2000:], cas.stderr[-2000:])
  files = ' '.join(evaluated_cgan['judge_files'])
  assert 'fmnist_classifier/checkpoints/' in files and 'cgan/checkpoints/' not in files
  assert 'fmnist_classifier/results.json' not in files  # Killed before the judge was done.
  assert 'cgan/checkpoints/2/' in ' '.join(evaluated_cgan['cas_files'])
  assert 'cgan/evaluation_progress.json' in evaluated_cgan['cas_files']  # Scored, then killed.
  assert last.returncode == 0, last.stderr[-3000:]
  # The GAN is not trained again: its last checkpoint is complete.
  assert re.search(r'resuming from step 2 \(all 1 epochs done\), checkpoint '
                   r'\S+/cgan/checkpoints/2', last.stdout), last.stdout
  assert re.search(r'resuming from step \d+ \(all 1 epochs done\), checkpoint '
                   r'\S+/fmnist_classifier/checkpoints', cas.stdout), cas.stdout  # Judge resumed.
  assert 'resuming the evaluation: quality' in last.stdout
  assert 'resuming the CAS classifier' in last.stdout
  # One epoch each in the logs: nothing was trained twice.
  for run_dir in (workdir, workdir.parent / 'fmnist_classifier', workdir / 'cas_classifier'):
    assert len(jsonio.read_jsonl(run_dir / 'metrics.jsonl')) == 1, run_dir
  results = json.loads((workdir / 'results.json').read_text())
  assert 0 <= results['test_conditional_accuracy'] <= 1 and 0 <= results['test_cas_accuracy'] <= 1
  assert 0 <= results['val_conditional_accuracy'] <= 1 and 0 <= results['val_cas_accuracy'] <= 1
  assert results['resumed_from_step'] > 0  # The last run resumed from the final checkpoint.
  assert not (workdir / 'evaluation_progress.json').exists()


# --- Paths: --out, --input, --workdir -------------------------------------------------------


def _cgan_sample(workdir: Path, out: str = '') -> None:
  from aml2_jax.cgan.sample import sample  # pylint: disable=g-import-not-at-top
  from aml2_jax.experiment import ModeOptions  # pylint: disable=g-import-not-at-top
  sample(_cgan_config(), workdir, ModeOptions(labels=(0, 9), num_per_class=2, out=out))


@pytest.mark.long
def test_sample_out_takes_png_or_npz_and_names_a_wrong_extension(evaluated_cgan, tmp_path):
  workdir = evaluated_cgan['workdir']
  _cgan_sample(workdir, str(tmp_path / 'missing' / 'parent' / 'images.npz'))  # Folders made.
  with np.load(tmp_path / 'missing' / 'parent' / 'images.npz') as npz:
    assert npz['images'].shape == (4, 28, 28) and npz['labels'].tolist() == [0, 0, 9, 9]
  assert (tmp_path / 'missing' / 'parent' / 'images.png').stat().st_size > 0
  done = launch(*_cgan_args(workdir, tmp_path), '--mode=sample', f'--out={tmp_path / "g.jpg"}')
  assert_one_clear_line(done, f'--out={tmp_path / "g.jpg"} must end in .png or .npz: both are '
                              'written, the labelled grid as g.png and the images and labels as '
                              'g.npz.')
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  with pytest.raises(StorageError, match=r'Not a directory \(ENOTDIR\); choose another --out'):
    _cgan_sample(workdir, str(blocker / 'grid.png'))


@pytest.mark.long
def test_a_read_only_trained_workdir_still_samples_and_eval_is_refused_clearly(evaluated_cgan,
                                                                                tmp_path):
  workdir = evaluated_cgan['workdir']
  with read_only(workdir, tmp_path / 'ro') as ro:
    _cgan_sample(ro, str(tmp_path / 'out' / 'grid.png'))  # Writing elsewhere works.
    assert (tmp_path / 'out' / 'grid.npz').exists()
    with pytest.raises(StorageError, match=r'cannot write \S+/ro/samples: Read-only file system '
                                           r'\(EROFS\); the file system is read-only: choose a '
                                           r'writable --out\.'):
      _cgan_sample(ro)  # The default --out is inside the read-only workdir.
    assert workdir_lib.prepare_workdir(str(ro), 'sample') == ro
    assert workdir_lib.prepare_workdir(str(ro), 'predict') == ro
    with pytest.raises(checkpointing.UserError, match=r'--mode=eval writes results there; copy it '
                                                      r'to a writable disk'):
      workdir_lib.prepare_workdir(str(ro), 'eval')
    with pytest.raises(checkpointing.UserError, match='cannot write to workdir'):
      workdir_lib.prepare_workdir(str(ro), 'train')


def test_workdir_and_input_paths_are_refused_in_one_clear_line(tmp_path):
  from aml2_jax.spam.predict import read_messages  # pylint: disable=g-import-not-at-top
  a_file = tmp_path / 'results.json'
  a_file.write_text('{}')
  for mode in ('train', 'eval'):  # A file given as the workdir (a wrong "extension").
    with pytest.raises(checkpointing.UserError, match=rf'cannot write to workdir {a_file} '):
      workdir_lib.prepare_workdir(str(a_file), mode)
  with pytest.raises(checkpointing.UserError, match=r'cannot write to workdir .*Not a directory'):
    workdir_lib.prepare_workdir(str(a_file / 'run'), 'train')  # Unwritable location.
  made = workdir_lib.prepare_workdir(str(tmp_path / 'new' / 'parents' / 'run'), 'train')
  assert made.is_dir()  # Missing parents are created for the modes that write.
  assert not workdir_lib.prepare_workdir(str(tmp_path / 'typo' / 'run'), 'sample').exists()
  (tmp_path / 'data.npz').write_bytes(b'PK\x03\x04\xff\xfe binary')
  for path, message in ((tmp_path / 'data.npz', r'data\.npz:1: not valid UTF-8 \(byte 0xff\)'),
                        (tmp_path / 'missing' / 'in.txt', r'No such file or directory'),
                        (tmp_path, r'Is a directory')):
    with pytest.raises(checkpointing.UserError, match=message):
      read_messages(str(path))


@pytest.mark.long
def test_sample_falls_back_from_a_truncated_latest_cgan_checkpoint(evaluated_cgan, tmp_path):
  """A damaged latest cGAN checkpoint (its files cut in half): sampling moves it aside and uses
  the previous one."""
  from aml2_jax.cgan.train import restore_generator  # pylint: disable=g-import-not-at-top
  workdir = Path(shutil.copytree(evaluated_cgan['workdir'], tmp_path / 'cgan'))
  assert step_dirs(workdir) == ['1', '2']
  truncate_files(workdir / 'checkpoints' / '2')
  done = launch(*_cgan_args(workdir, tmp_path), '--mode=sample', f'--out={tmp_path / "g.png"}')
  assert done.returncode == 0, done.stderr[-3000:]
  assert re.search(r'warning: checkpoint step 2 in \S+ is damaged \(.*truncated.*\); moved it to '
                   r'\S+/2\.damaged, using the next intact one', done.stderr), done.stderr[-3000:]
  assert not error_lines(done.stderr) and (tmp_path / 'g.npz').exists()  # Nothing else said.
  assert step_dirs(workdir) == ['1', '2.damaged']
  truncate_files(workdir / 'checkpoints' / '1')
  with pytest.raises(checkpointing.UserError, match=r'no intact checkpoint is left in \S+ \(the '
                                                    r'damaged ones are kept aside\); retrain: '
                                                    r'python launch.py --config=configs/cgan.py '
                                                    r'--workdir='):
    restore_generator(_cgan_config(), workdir)
