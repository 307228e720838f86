"""The shared loop on a tiny regression task: resumption, checkpoints, divergence, retracing,
what it prints; and a real run stopped by SIGTERM."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aml2_jax import console
from aml2_jax.runtime import metrics_logging
from aml2_jax.training import loop as train_loop
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.training.config import base_config
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.train_state import TrainState, step_key
from conftest import REPO, cgan_cli_args, checkpoint_leaves

TX = optax.adam(0.05)  # Adam: the optimizer state is part of what must round-trip.


def regression_step(state, data, batch_idx):
  """Least squares with a noisy gradient (uses the step key, so RNG handling is exercised)."""
  x, y = data['x'][batch_idx], data['y'][batch_idx]
  loss, grads = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.params)
  grads = grads + 0.01 * jax.random.normal(step_key(state), grads.shape)
  return state.apply_gradients(grads=grads), {'loss': loss}


def regression_task(step=regression_step, num=96) -> train_loop.TrainTask:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num, 3)).astype(np.float32)
  data = {'x': x, 'y': x @ np.array([1.0, -2.0, 0.5], np.float32)}
  state = TrainState.create(apply_fn=None, params=jnp.zeros(3), tx=TX, key=jax.random.key(0))
  return train_loop.TrainTask(state=state, train_step=step, data=data, num_examples=num,
                              meta={'experiment': 'regression'})


def loop_config(num_epochs=3, **overrides) -> ml_collections.ConfigDict:
  config = base_config('regression')
  config.num_epochs, config.batch_size, config.steps_per_call = num_epochs, 8, 4
  config.update(overrides)
  return config


def run(task, config, workdir):
  ckpt, logger = Checkpointer(workdir / 'checkpoints', config.keep_checkpoints), MetricLogger(workdir)
  try:
    return train_loop.Trainer(task, config, ckpt, logger).run()
  finally:
    logger.close()
    ckpt.close()


def test_epoch_order_is_a_seeded_permutation():
  order = train_loop.epoch_order(seed=1, epoch=2, num_examples=50, batch_size=8)
  assert order.shape == (6, 8) and len(set(order.ravel())) == 48
  np.testing.assert_array_equal(order, train_loop.epoch_order(1, 2, 50, 8))
  assert not np.array_equal(order, train_loop.epoch_order(1, 3, 50, 8))


def test_training_lowers_the_loss_and_logs_every_epoch(tmp_path):
  state = run(regression_task(), loop_config(), tmp_path)
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['epoch'] for r in records] == [1, 2, 3] and [r['step'] for r in records] == [12, 24, 36]
  assert records[-1]['train_loss'] < 0.5 * records[0]['train_loss']
  assert int(state.step) == 36


def test_resumed_run_continues_at_the_right_step_and_matches_an_uninterrupted_one(tmp_path):
  straight = run(regression_task(), loop_config(3), tmp_path / 'straight')
  run(regression_task(), loop_config(1), tmp_path / 'resumed')  # Stopped after epoch 1.
  resumed = run(regression_task(), loop_config(3), tmp_path / 'resumed')
  assert int(resumed.step) == 36
  np.testing.assert_array_equal(resumed.params, straight.params)
  lines = (tmp_path / 'resumed' / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(l)['step'] for l in lines] == [12, 24, 36]  # Epoch 1 was not redone.


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
  straight = run(regression_task(), loop_config(2), tmp_path / 'straight')
  workdir = tmp_path / 'cut'
  run(regression_task(), loop_config(2, checkpoint_every_steps=8, keep_checkpoints=5), workdir)
  shutil.rmtree(workdir / 'checkpoints' / '24')  # As if killed between step 16 and the end.
  resumed = run(regression_task(), loop_config(2), workdir)
  np.testing.assert_array_equal(resumed.params, straight.params)
  straight_last = json.loads((tmp_path / 'straight' / 'metrics.jsonl').read_text().splitlines()[-1])
  resumed_last = json.loads((workdir / 'metrics.jsonl').read_text().splitlines()[-1])
  assert straight_last == resumed_last  # Bit-identical metrics: the running sums were saved.


def test_train_step_is_traced_once(tmp_path):
  chex.clear_trace_counter()
  # One trace for the metric sums' structure (eval_shape), one for the jitted chunk: 3 epochs of
  # 3 chunks each must not add any.
  step = chex.assert_max_traces(regression_step, n=2)
  run(regression_task(step), loop_config(3), tmp_path)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  def diverging_step(state, data, batch_idx):
    state, metrics = regression_step(state, data, batch_idx)
    bad = state.step > 15
    return state, {'loss': jnp.where(bad, jnp.nan, metrics['loss'])}

  with pytest.raises(train_loop.TrainingDiverged, match=r'loss=nan by step 16.*step 12\) is kept'):
    run(regression_task(diverging_step), loop_config(3), tmp_path)
  ckpt = Checkpointer(tmp_path / 'checkpoints')
  assert ckpt.manager.all_steps() == [12]
  ckpt.close()


def test_a_changed_model_config_is_refused_and_nothing_is_overwritten(tmp_path):
  run(regression_task(), loop_config(1), tmp_path)
  task = regression_task()
  task.meta = {'experiment': 'regression', 'model': {'units': 5}}
  with pytest.raises(Exception, match='was made with a different model'):
    run(task, loop_config(2), tmp_path)
  ckpt = Checkpointer(tmp_path / 'checkpoints')
  assert ckpt.manager.all_steps() == [12]
  ckpt.close()


@pytest.mark.long
def test_sigterm_saves_a_checkpoint_and_exits_130(tiny_fmnist_root, tmp_path):
  workdir = tmp_path / 'run'
  proc = subprocess.Popen([sys.executable, str(REPO / 'launch.py'),
                           *cgan_cli_args(workdir, tiny_fmnist_root, 50)], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not (workdir / 'checkpoints' / '3').is_dir() and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert 'stopped: SIGTERM: saved a checkpoint at step' in stderr
  ckpt = Checkpointer(workdir / 'checkpoints')
  saved = ckpt.latest_step()
  ckpt.close()
  assert f'at step {saved} ' in stderr


@pytest.mark.long
def test_checkpoint_restores_identically_in_a_fresh_process(tmp_path):
  state = run(regression_task(num=256), loop_config(1), tmp_path)
  restored = checkpoint_leaves(tmp_path / 'checkpoints', tmp_path)
  in_memory = jax.tree.leaves(state)  # Params, optimizer state, step and key data.
  assert len(restored) == len(in_memory) >= 6  # Adam adds count, mu and nu.
  # Orbax restores without a target as sorted dicts: compare the leaves as a multiset of bytes.
  as_bytes = lambda leaves: sorted((np.asarray(x).dtype.str, np.asarray(x).tobytes()) for x in leaves)
  assert as_bytes(restored) == as_bytes(in_memory)


def test_a_save_cut_short_leaves_the_previous_checkpoint_restorable(tmp_path):
  straight = run(regression_task(), loop_config(2), tmp_path / 'straight')
  workdir = tmp_path / 'cut'
  run(regression_task(), loop_config(1), workdir)
  # What a crash in the middle of saving step 24 leaves: orbax's temporary directory, half full.
  partial = workdir / 'checkpoints' / '24.orbax-checkpoint-tmp-1764345600'
  (partial / 'state').mkdir(parents=True)
  (partial / 'state' / 'manifest.ocdbt').write_bytes(b'\x00' * 7)
  resumed = run(regression_task(), loop_config(2), workdir)
  np.testing.assert_array_equal(resumed.params, straight.params)


# --- What a user sees while a run trains ------------------------------------------------------

def two_metric_step(state, data, batch_idx):
  """`regression_step` also reporting its gradient norm: two train metrics, 'loss' not first
  alphabetically."""
  x, y = data['x'][batch_idx], data['y'][batch_idx]
  loss, grads = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.params)
  return state.apply_gradients(grads=grads), {'loss': loss, 'grad_norm': optax.tree.norm(grads)}


def distance_hooks(**kwargs) -> train_loop.EpochHooks:
  """A held-out figure that changes with training: the distance to the true weights."""
  truth = np.array([1.0, -2.0, 0.5], np.float32)
  return train_loop.EpochHooks(
      evaluate=lambda state: {'val_distance': float(np.linalg.norm(state.params - truth))},
      **kwargs)


def train_and_capture(tmp_path, capsys, num_epochs=3, hooks=None):
  """A short run of `two_metric_step` with `distance_hooks`; (stdout, stderr, metrics records)."""
  capsys.readouterr()  # Drop anything printed before.
  train_loop.train_in_workdir(regression_task(two_metric_step), loop_config(num_epochs), tmp_path,
                              hooks or distance_hooks())
  out, err = capsys.readouterr()
  records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  return out, err, records


def test_each_epoch_prints_one_line_with_its_train_losses_held_out_metric_and_time(tmp_path,
                                                                                   capsys):
  out, _, records = train_and_capture(tmp_path, capsys)
  line = re.compile(r'^regression epoch (\d)/3  loss (\S+)  grad_norm (\S+)  '
                    r'val_distance (\S+)  \d+\.\d s \+ eval \d+\.\d s$')
  found = [m.groups() for m in map(line.match, out.splitlines()) if m]
  assert len(found) == 3, out
  for (epoch, loss, grad_norm, distance), record in zip(found, records):
    assert int(epoch) == record['epoch']
    # The printed figures are the logged ones, in 4 significant digits.
    assert [loss, grad_norm, distance] == [f'{record[k]:.4g}' for k in
                                           ('train_loss', 'train_grad_norm', 'val_distance')]
  assert float(found[-1][3]) < float(found[0][3])  # Training moved toward the truth.


def test_the_line_shows_the_held_out_metrics_the_hooks_name(tmp_path, capsys):
  hooks = train_loop.EpochHooks(evaluate=lambda state: {'val_a': 1.0, 'val_b': 2.0, 'val_c': 3.0},
                                console_metrics=('val_c', 'val_a'))
  out, _, records = train_and_capture(tmp_path, capsys, num_epochs=1, hooks=hooks)
  assert '  val_c 3  val_a 1  ' in out and 'val_b' not in out
  assert records[0]['val_b'] == 2.0  # Logged all the same.


def test_without_a_terminal_the_bars_give_way_to_the_epoch_lines(tmp_path, capsys):
  _, err, _ = train_and_capture(tmp_path, capsys)  # capsys's stderr is not a terminal.
  assert '\r' not in err and 'step/s' not in err and '%|' not in err, err


def test_a_shown_bar_carries_the_running_loss(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(metrics_logging, 'SHOW_BARS', True)  # As on a terminal.
  out, err, records = train_and_capture(tmp_path, capsys, num_epochs=1)
  final = [line for line in err.split('\r') if '12/12' in line][-1]  # The bar at the epoch's end.
  assert final.startswith('epoch 1/1: 100%|'), err
  # The postfix holds the loss of the last step read back (the last chunk's last step).
  assert re.search(r', loss=[0-9.e+-]+\]$', final.strip()), final
  assert 'grad_norm=' not in final  # Losses only: the bar stays short.
  assert 'regression epoch 1/1  loss' in out


def test_only_process_0_speaks(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(metrics_logging, 'SHOW_BARS', True)
  monkeypatch.setattr(console, 'is_main_process', lambda: False)
  capsys.readouterr()
  run(regression_task(), loop_config(1), tmp_path)
  assert capsys.readouterr() == ('', '')


def test_epoch_line_of_a_seed_batch_says_it_shows_means():
  line = metrics_logging.epoch_line(
      'spam', 2, 5, {'loss': np.array([0.5, 0.25]), 'accuracy': np.array([0.9, 0.8])},
      {'val_f1': np.array([0.8, 0.6])}, 12.34, 0.56)
  assert line == ('spam epoch 2/5  loss 0.375  accuracy 0.85  val_f1 0.7  '
                  '12.3 s + eval 0.6 s  (means over 2 seeds)')
  # A seed batch's meta holds each seed's; the line names their experiment.
  assert metrics_logging.experiment_name({'seeds': [{'experiment': 'spam'}] * 2}) == 'spam'


def test_the_resume_rule_compares_only_the_optimizer_settings_a_checkpoint_recorded(tmp_path):
  from aml2_jax.errors import UserError
  from aml2_jax.training.checkpoint_integrity import check_compatible
  now = {'model': {'units': 8}, 'optim': {'learning_rate': 0.01, 'loss': 'bce'}, 'num_epochs': 3}
  # Saved before the rule (no optim, no num_epochs), or before `optim.loss` existed: resumable.
  check_compatible({'model': {'units': 8}}, now, tmp_path)
  check_compatible({'model': {'units': 8}, 'optim': {'learning_rate': 0.01}, 'num_epochs': 2},
                   now, tmp_path)
  with pytest.raises(UserError, match=r'different optim.learning_rate \(0.02 there, 0.01 now\)'):
    check_compatible({'model': {'units': 8}, 'optim': {'learning_rate': 0.02}}, now, tmp_path)
  with pytest.raises(UserError, match='num_epochs may only grow'):
    check_compatible({'model': {'units': 8}, 'num_epochs': 4}, now, tmp_path)
