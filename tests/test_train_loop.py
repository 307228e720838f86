"""The shared loop on a tiny regression task: resumption, checkpoints, divergence, retracing;
and a real run stopped by SIGTERM."""

import json
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

from aml2_jax.training import loop as train_loop
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.training.config import base_config
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.train_state import TrainState, apply_gradients, step_key
from conftest import REPO, cgan_cli_args, checkpoint_leaves

TX = optax.adam(0.05)  # Adam: the optimizer state is part of what must round-trip.


def regression_step(state, data, batch_idx):
  """Least squares with a noisy gradient (uses the step key, so RNG handling is exercised)."""
  x, y = data['x'][batch_idx], data['y'][batch_idx]
  loss, grads = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.params)
  grads = grads + 0.01 * jax.random.normal(step_key(state), grads.shape)
  return apply_gradients(state, grads, TX), {'loss': loss}


def regression_task(step=regression_step, num=96) -> train_loop.TrainTask:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num, 3)).astype(np.float32)
  data = {'x': x, 'y': x @ np.array([1.0, -2.0, 0.5], np.float32)}
  state = TrainState.create(jnp.zeros(3), TX, jax.random.key(0))
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
    return train_loop.train(task, config, ckpt, logger)
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
