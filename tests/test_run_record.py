"""run.json: one record per invocation, completed at the end, merged with what others wrote."""

import json

import pytest

from aml2_jax.runtime import run_record


def _invocations(workdir) -> list[dict]:
  return json.loads((workdir / run_record.RUN_FILE).read_text())['invocations']


def test_each_invocation_is_recorded_with_its_command_machine_versions_and_end(tmp_path):
  with run_record.RunRecorder(tmp_path, 'train', argv=['launch.py', '--config=configs/x.py']):
    started = _invocations(tmp_path)
    assert len(started) == 1 and 'finished' not in started[0]  # Written at the start already.
  with pytest.raises(ValueError):
    with run_record.RunRecorder(tmp_path, 'eval', argv=['launch.py', '--mode=eval']):
      raise ValueError('bad  value\nsecond line')
  first, second = _invocations(tmp_path)
  assert first['command'] == 'python launch.py --config=configs/x.py' and first['exit'] == 'ok'
  assert first['mode'] == 'train' and first['wall_s'] >= 0 and first['finished'] >= first['started']
  assert first['machine']['cores'] >= 1 and first['machine']['backend'] == 'cpu'
  assert first['versions']['jax'] and first['git']['commit']
  assert second['mode'] == 'eval' and second['exit'] == 'ValueError: bad value second line'


def test_an_entry_written_by_another_writer_during_the_run_is_kept(tmp_path):
  with run_record.RunRecorder(tmp_path, 'train', argv=['launch.py']):
    record = run_record.read(tmp_path)
    record['invocations'].insert(0, {'command': 'an earlier run', 'started': '2026-01-01'})
    (tmp_path / run_record.RUN_FILE).write_text(json.dumps(record))
  earlier, mine = _invocations(tmp_path)
  assert earlier['command'] == 'an earlier run' and mine['exit'] == 'ok'


def test_an_invocation_killed_without_notice_is_closed_by_the_next_one_at_its_last_write(tmp_path):
  import os
  start = 1_790_000_000  # 2026-09-21, seconds.
  killed = {'command': 'python launch.py', 'started': '2026-09-21T14:13:20+00:00'}
  older = {'command': 'python launch.py', 'started': '2026-09-20T00:00:00+00:00'}  # No trace left.
  (tmp_path / run_record.RUN_FILE).write_text(json.dumps({'invocations': [older, killed]}))
  for name, written in (('metrics.jsonl', start + 600), ('config.json', start - 200_000)):
    (tmp_path / name).write_text('{}')
    os.utime(tmp_path / name, (written, written))
  with run_record.RunRecorder(tmp_path, 'train', argv=['launch.py']):
    pass
  older, killed, mine = _invocations(tmp_path)
  assert killed['wall_s'] == 600 and killed['finished'] == '2026-09-21T14:23:20+00:00'
  assert 'killed without notice' in killed['exit'] and 'after the fact' in killed['note']
  assert 'finished' not in older  # Its files were rewritten since: nothing bounds its end.
  assert mine['exit'] == 'ok'
