"""Seeds trained in one program (`training.seed_batch`) equal the same seeds trained one by one."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aml2_jax import spam
from aml2_jax.errors import UserError
from aml2_jax.spam import seeds, train as spam_train
from aml2_jax.training import loop, seed_batch
from aml2_jax.training.checkpointing import Checkpointer
from aml2_jax.training.config import base_config, load_config
from aml2_jax.runtime.metrics_logging import MetricLogger
from aml2_jax.training.train_state import TrainState, step_key

TX = optax.adam(0.05)


def _regression_step(state, data, batch_idx):
  x, y = data['x'][batch_idx], data['y'][batch_idx]
  loss, grads = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state.params)
  grads = grads + 0.01 * jax.random.normal(step_key(state), grads.shape)
  return state.apply_gradients(grads=grads), {'loss': loss}


def _regression_task(seed: int, num: int = 40) -> loop.TrainTask:
  x = np.random.default_rng(seed).normal(size=(num, 3)).astype(np.float32)
  data = {'x': x, 'y': x @ np.array([1.0, -2.0, 0.5], np.float32)}
  state = TrainState.create(apply_fn=None, params=jnp.zeros(3), tx=TX, key=jax.random.key(seed))
  return loop.TrainTask(state=state, train_step=_regression_step, data=data, num_examples=num,
                        meta={'seed': seed})


def _loop_config(seed: int = 0):
  config = base_config('regression')
  config.seed, config.num_epochs, config.batch_size, config.steps_per_call = seed, 2, 8, 2
  return config


def test_a_seed_batch_trains_each_seed_as_its_own_run(tmp_path):
  solo = {}
  for seed in (3, 4):
    ckpt = Checkpointer(tmp_path / 'solo' / str(seed) / 'checkpoints')
    logger = MetricLogger(tmp_path / 'solo' / str(seed))
    solo[seed] = loop.Trainer(_regression_task(seed), _loop_config(seed), ckpt, logger).run()
    ckpt.close()
    logger.close()
  dirs = [tmp_path / 'batch' / str(seed) for seed in (3, 4)]
  task = seed_batch.stack_tasks([_regression_task(3), _regression_task(4)], [3, 4])
  ckpt = seed_batch.SeedCheckpointers([Checkpointer(d / 'checkpoints') for d in dirs], tmp_path)
  logger = seed_batch.SeedLoggers([MetricLogger(d) for d in dirs])
  stacked = loop.Trainer(task, _loop_config(), ckpt, logger).run()
  ckpt.close()
  logger.close()
  assert stacked.params.shape == (2, 3)
  for k, seed in enumerate((3, 4)):
    np.testing.assert_allclose(stacked.params[k], solo[seed].params, rtol=1e-6)
    lines = (dirs[k] / 'metrics.jsonl').read_text().splitlines()
    solo_lines = (tmp_path / 'solo' / str(seed) / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(l)['train_loss'] for l in lines] == pytest.approx(
        [json.loads(l)['train_loss'] for l in solo_lines], rel=1e-6)
  # Each seed drew its own data and order: the seeds did not train alike.
  assert not np.allclose(stacked.params[0], stacked.params[1])


def test_stack_tasks_refuses_training_sets_of_different_sizes():
  with pytest.raises(UserError, match=r'\[40, 32\] training examples.*one size'):
    seed_batch.stack_tasks([_regression_task(0), _regression_task(1, num=32)], [0, 1])


def _spam_config(name: str, root: Path, in_one_program: bool, **fields):
  config = load_config(name, 'smoke')
  config.data.dir = str(root)
  config.num_seeds, config.seeds_in_one_program = 2, in_one_program
  config.optim.learning_rate = 1e-2  # Learns the synthetic words in the smoke run's steps.
  config.update(fields)
  return config


def _final_params(config, workdir: Path, seed: int):
  run = next(r for r in seeds.run_configs(config) if r.seed == seed)
  return spam_train.restore_for_eval(run, seeds.seed_dir(workdir, seed), workdir)[0]


@pytest.mark.long
@pytest.mark.parametrize('name, keep_best', [('spam_rnn', False), ('spam_lstm', True)])
def test_spam_seeds_in_one_program_equal_their_sequential_runs(name, keep_best, tiny_sms_root,
                                                               tmp_path):
  summary = {}
  for mode in ('batched', 'sequential'):
    config = _spam_config(name, tiny_sms_root, mode == 'batched', keep_best_val_epoch=keep_best)
    (tmp_path / mode).mkdir()
    summary[mode] = spam.train_and_evaluate(config, tmp_path / mode)
  batched, sequential = summary['batched']['per_seed'], summary['sequential']['per_seed']
  assert list(batched) == list(sequential) == ['0', '1']
  for seed, results in batched.items():
    assert results['trained_in_one_program_with_seeds'] == [0, 1]
    assert 'trained_in_one_program_with_seeds' not in sequential[seed]
    assert results['epoch_used'] == sequential[seed]['epoch_used']
    for key in ('test_loss', 'test_roc_auc', 'val_loss'):
      assert results[key] == pytest.approx(sequential[seed][key], rel=1e-4, abs=1e-6), key
    assert results['test_confusion_matrix'] == sequential[seed]['test_confusion_matrix']
    epochs = [[json.loads(l) for l in (tmp_path / str(mode) / f'seed_{seed}' / 'metrics.jsonl')
               .read_text().splitlines()] for mode in ('batched', 'sequential')]
    # What eval and predict restore: each seed's own checkpoint, the same in both workdirs up to
    # float rounding, whatever the CPU. The two programs add the same float32 terms in other
    # orders, so a gradient entry may differ by n * eps of its terms' sizes (eps = 2**-23; n, the
    # terms behind one embedding entry, at most batch * maxlen * units). Adam's step
    # lr * m / sqrt(v) ignores the gradient's scale and is at most about lr, so each step may move
    # an entry by lr * n * eps more, and the steps add up: atol = steps * lr * n * eps (3.3e-4
    # here; measured differences stay 20x below it). The value itself rounds once a step:
    # rtol = steps * eps. A wrong batch moves entries by about lr (1e-2); swapped seeds put 99%
    # of the entries beyond the tolerance (a different init, uniform in [-0.05, 0.05]).
    steps, eps = epochs[1][-1]['step'], float(np.finfo(np.float32).eps)
    terms = config.batch_size * config.data.maxlen * config.model.units
    atol = steps * config.optim.learning_rate * terms * eps
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=steps * eps, atol=atol),
                 _final_params(config, tmp_path / 'batched', int(seed)),
                 _final_params(config, tmp_path / 'sequential', int(seed)))
    assert [e['epoch'] for e in epochs[0]] == [1, 2]
    assert [e['val_loss'] for e in epochs[0]] == pytest.approx(
        [e['val_loss'] for e in epochs[1]], rel=1e-4)
  assert batched['0']['test_loss'] != batched['1']['test_loss']  # Two seeds, two splits.


@pytest.mark.long
def test_spam_seed_batch_resumes_exactly_when_one_seed_saved_further(tiny_sms_root, tmp_path):
  config = _spam_config('spam_lstm', tiny_sms_root, True, checkpoint_every_steps=4)
  workdir = tmp_path
  straight = spam.train_and_evaluate(config, workdir)['per_seed']
  params = {s: _final_params(config, workdir, s) for s in (0, 1)}
  # As if killed while saving the last step: seed 1's is written, seed 0's is not.
  steps = sorted(int(p.name) for p in (workdir / 'seed_0' / 'checkpoints').iterdir()
                 if p.name.isdigit())
  shutil.rmtree(workdir / 'seed_0' / 'checkpoints' / str(steps[-1]))
  resumed = spam.train_and_evaluate(config, workdir)['per_seed']
  # Resumed mid-epoch (the running sums restored), from the last step both seeds have.
  assert steps[-2] % 9 and resumed['0']['resumed_from_step'] == steps[-2]
  assert resumed['1']['resumed_from_step'] == steps[-1] == 18
  for s in (0, 1):
    jax.tree.map(np.testing.assert_array_equal, _final_params(config, workdir, s), params[s])
    assert resumed[str(s)]['test_loss'] == straight[str(s)]['test_loss']
