"""The launcher: config files, overrides, and one-line errors for what a user can get wrong."""

import pytest

from aml2_jax.training.config import CONFIG_DIR, load_config
from conftest import launch

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob('*.py') if not p.stem.startswith('_'))


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.parametrize('variant', ['', 'smoke'])
def test_every_config_has_the_shared_fields(name, variant):
  config = load_config(name, variant)
  assert config.experiment
  for field in ('seed', 'num_epochs', 'batch_size'):
    assert isinstance(config[field], int), f'{name}: config.{field} missing or not an int'


def test_smoke_variant_is_smaller_than_the_default():
  assert load_config('cgan', 'smoke').data.limit > 0
  assert load_config('cgan').num_epochs == 30 and load_config('cgan').data.limit == 0


def test_summary_with_an_override_prints_the_exact_parameter_counts():
  result = launch('--config=configs/cgan.py', '--config.batch_size=128', '--mode=summary')
  assert result.returncode == 0, result.stderr
  totals = [line for line in result.stdout.splitlines() if line.startswith('Total params')]
  assert [t.split()[-1] for t in totals] == ['1,489,012', '1,470,565']


@pytest.mark.parametrize('args, message', [
    (['--config.num_epoch=3'], 'num_epoch'),  # Misspelt field: refused by config_flags.
    (['--config.batch_size=0'], 'config.batch_size is 0: it must be > 0'),
    (['--config.num_epochs=-2'], 'config.num_epochs is -2: it must be > 0'),
    (['--config.model.dropout=1.0'], 'config.model.dropout is 1.0: it must be in [0, 1)'),
    (['--config.batch_size=abc'], 'batch_size'),  # Wrong type.
    (['--mode=dance'], '--mode=dance is not a mode of the cgan experiment'),
    (['--mode=eval'], 'no checkpoint in'),
])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, args, message):
  result = launch('--config=configs/cgan.py:smoke', f'--workdir={tmp_path / "run"}', *args)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr


def test_unwritable_workdir_is_refused(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  result = launch('--config=configs/cgan.py:smoke', f'--workdir={blocker / "run"}')
  assert result.returncode == 2 and 'cannot write to workdir' in result.stderr


def test_missing_data_offline_names_the_fix(tmp_path):
  result = launch('--config=configs/cgan.py:smoke', f'--workdir={tmp_path / "run"}',
                  f'--config.data.dir={tmp_path / "empty"}')
  assert result.returncode == 2
  assert 'config.data.dir' in result.stderr and 'Traceback' not in result.stderr


def test_a_second_run_on_a_busy_workdir_is_refused(tmp_path):
  from aml2_jax.runtime.workdir import WorkdirLock
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'keep.txt').write_text('earlier results')
  with WorkdirLock(workdir):  # Stands in for a live training process.
    result = launch('--config=configs/cgan.py:smoke', f'--workdir={workdir}')
  assert result.returncode == 2
  assert 'is in use by a live run (pid ' in result.stderr
  assert (workdir / 'keep.txt').read_text() == 'earlier results'
  assert not (workdir / 'checkpoints').exists()
