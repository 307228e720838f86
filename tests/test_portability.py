"""Runs that travel: the suite on CPU anywhere, GPU/TPU lowerings, checkpoints across device
counts, and no recompilation as epochs go by."""

import json
import os
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from aml2_jax.cgan import generate as cgan_generate, train as cgan_train
from aml2_jax.datasets import char_corpus
from aml2_jax.datasets.fashion_mnist import FashionMnist
from aml2_jax.fmnist_classifier import train as classifier_train
from aml2_jax.spam import train as spam_train
from aml2_jax.spam.models import make_model as make_spam_model
from aml2_jax.textgen import generate as textgen_generate, train as textgen_train
from aml2_jax.textgen.models import make_model as make_char_model
from aml2_jax.training import loop
from aml2_jax.training.config import load_config
from conftest import REPO, devices_env, launch

ACCELERATORS = ('cuda', 'tpu')


def test_the_suite_runs_on_cpu_wherever_it_is_started():
  assert os.environ['JAX_PLATFORMS'] == 'cpu'  # Set by conftest before JAX was imported.
  assert jax.default_backend() == 'cpu'
  code = 'import jax; print(jax.default_backend())'
  child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert child.stdout.strip() == 'cpu'  # Launched processes inherit it.


# ------------------------------------------------------------------ lowering for GPU and TPU


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), tree)


def _export_chunk(task: loop.TrainTask, batch_size: int, steps: int) -> None:
  """Lowers the task's fused train chunk for GPU and TPU at its real shapes."""
  chunk = loop.make_train_chunk(task.train_step, task.compiler_options)
  sums = loop.zero_sums(task.train_step, task.state, task.data, batch_size)
  batch_idx = jax.ShapeDtypeStruct((steps, batch_size), jnp.int32)
  export.export(chunk, platforms=ACCELERATORS)(
      _abstract(task.state), _abstract(sums), _abstract(task.data), batch_idx)


def _export(jitted, *args) -> None:
  export.export(jitted, platforms=ACCELERATORS)(*args)


@pytest.mark.long
@pytest.mark.parametrize('ops', ['fast', 'plain'])
def test_cgan_and_judge_lower_for_gpu_and_tpu(ops):
  config = load_config('cgan')
  config.model.ops = ops
  images = np.zeros((256, 28, 28), np.uint8)
  data = FashionMnist(images, np.arange(256) % 10, images[:10], np.arange(10))
  task = cgan_train.build_task(config, data)
  _export_chunk(task, config.batch_size, 16)
  g, _ = cgan_train.make_model(config)
  generate = cgan_generate._images_fn(g).jitted  # pylint: disable=protected-access
  batch = cgan_generate.BATCH
  _export(generate, _abstract(task.state.g.params),
          jax.ShapeDtypeStruct((batch, config.model.latent_dim), jnp.float32),
          jax.ShapeDtypeStruct((batch,), jnp.int32))
  judge_config = load_config('fmnist_classifier')
  judge_config.model.ops = ops
  judge_task = classifier_train.build_task(judge_config, images, np.arange(256) % 10, {})
  _export_chunk(judge_task, judge_config.batch_size, 16)
  predict = classifier_train.predict_fn(classifier_train.make_model(judge_config)).jitted
  _export(predict, _abstract(judge_task.state.params),
          jax.ShapeDtypeStruct((classifier_train.PREDICT_BATCH, 28, 28), jnp.uint8))


@pytest.mark.long
@pytest.mark.parametrize('name', ['spam_rnn', 'spam_lstm'])
def test_spam_classifier_lowers_for_gpu_and_tpu(name):
  config = load_config(name)
  ids = np.zeros((256, config.data.maxlen), np.int32)
  split = types.SimpleNamespace(train_ids=ids, train_labels=np.zeros(256, np.int32))  # What it reads.
  task = spam_train.build_task(config, split)
  _export_chunk(task, config.batch_size, 16)
  logits = spam_train.logits_fn(make_spam_model(config)).jitted
  _export(logits, _abstract(task.state.params),
          jax.ShapeDtypeStruct((spam_train.EVAL_BATCH, config.data.maxlen), jnp.int32))


@pytest.mark.long
@pytest.mark.parametrize('name', ['textgen_rnn', 'textgen_lstm'])
@pytest.mark.parametrize('objective', char_corpus.OBJECTIVES)
def test_text_generator_lowers_for_gpu_and_tpu(name, objective):
  config = load_config(name)
  config.objective = objective
  messages = [chr(33 + i) * 150 for i in range(116)]  # 117 characters with the end character.
  corpus = char_corpus.build_corpus(messages, 0.1, seed=0)
  task = textgen_train.build_task(config, corpus)
  _export_chunk(task, config.batch_size, 16)
  model = make_char_model(config, corpus.vocab.size).clone(all_steps=False)
  params = _abstract(task.state.params)
  window = config.data.window
  validate = jax.jit(lambda p, ids: model.apply({'params': p}, ids)[1])
  _export(validate, params, jax.ShapeDtypeStruct((config.eval.batch_size, window), jnp.int32))
  sampler = textgen_generate.CharSampler(model, window)
  _export(sampler._from_window, params,  # pylint: disable=protected-access
          jax.ShapeDtypeStruct((1, window), jnp.int32))


# ------------------------------------------------------------------ checkpoints across devices


def _kind(kind: str, roots: dict) -> dict:
  """Launcher args of a tiny run of each experiment, where its run folder is, and its inference."""
  if kind == 'spam':
    return {'args': ['--config=configs/spam_lstm.py:smoke', f'--config.data.dir={roots["sms"]}'],
            'run': 'seed_0', 'infer': ['--mode=predict', '--text=win a free prize now',
                                       '--text=see you at lunch']}
  if kind == 'textgen':
    return {'args': ['--config=configs/textgen_lstm.py:smoke', f'--config.data.dir={roots["sms"]}'],
            'run': '', 'infer': ['--mode=sample', '--prompt=win ', '--length=30', '--seed=3']}
  return {'args': ['--config=configs/cgan.py:smoke', f'--config.data.dir={roots["fmnist"]}',
                   '--noconfig.eval.after_training'],
          'run': '', 'infer': ['--mode=sample', '--labels=1,7', '--num_per_class=3', '--seed=2']}


def _launch_ok(*args, env=None):
  done = launch(*args, env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.mark.long
@pytest.mark.parametrize('kind', ['cgan', 'spam', 'textgen'])
def test_trained_on_4_devices_restores_on_1_and_resumes_on_2(kind, tiny_sms_root, tiny_fmnist_root,
                                                             tmp_path):
  spec = _kind(kind, {'sms': tiny_sms_root, 'fmnist': tiny_fmnist_root})
  trained = tmp_path / 'trained'
  _launch_ok(*spec['args'], '--config.num_epochs=1', '--config.num_devices=4',
             f'--workdir={trained}', env=devices_env(4))
  outputs = []
  for count in (4, 1):  # The same inference in a 4-device process and in a 1-device one.
    out = tmp_path / f'grid_{count}.png'
    extra = [f'--out={out}'] if kind == 'cgan' else []
    done = _launch_ok(*spec['args'], *spec['infer'], *extra, f'--workdir={trained}',
                      env=devices_env(count))
    outputs.append(np.load(out.with_suffix('.npz'))['images'] if kind == 'cgan' else done.stdout)
  if kind == 'cgan':
    np.testing.assert_array_equal(outputs[0], outputs[1])
  else:
    assert outputs[0] == outputs[1] and outputs[0].strip()
  finals = []
  for count in (2, 4):  # Resume to epoch 2 on 2 devices, and on 4 from a copy.
    workdir = tmp_path / f'resumed_{count}'
    shutil.copytree(trained, workdir)
    done = _launch_ok(*spec['args'], '--config.num_epochs=2', f'--config.num_devices={count}',
                      f'--workdir={workdir}', env=devices_env(count))
    assert 'resuming from step' in done.stdout
    lines = (workdir / spec['run'] / 'metrics.jsonl').read_text().splitlines()
    finals.append(json.loads(lines[-1]))
  assert finals[0]['epoch'] == finals[1]['epoch'] == 2
  # 2 and 4 devices sum gradients in different orders; RMSProp (the text generator) divides by
  # the root of tiny squared gradients and so amplifies those last-bit differences.
  tolerance = 2e-2 if kind == 'textgen' else 1e-3
  for key, value in finals[1].items():
    if key.startswith('train_') and 'norm' not in key:
      assert finals[0][key] == pytest.approx(value, rel=tolerance, abs=1e-4), key


# ------------------------------------------------------------------ compile once

_COUNT_COMPILES = """
import sys
from jax import monitoring
compiles = []
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compiles.append(event)
    if event == '/jax/core/compile/backend_compile_duration' else None)
sys.argv = ['launch.py'] + sys.argv[1:]
import launch
from absl import app
try:
  app.run(launch.main, flags_parser=launch.parse_flags)
finally:
  print('COMPILES', len(compiles))
"""


def _compilations(args: list[str], epochs: int, workdir) -> int:
  done = subprocess.run([sys.executable, '-c', _COUNT_COMPILES, *args,
                         f'--config.num_epochs={epochs}', f'--workdir={workdir}'],
                        cwd=REPO, capture_output=True, text=True, timeout=600)
  assert 'COMPILES' in done.stdout, done.stderr[-3000:]
  return int(done.stdout.split('COMPILES')[-1].split()[0])


@pytest.mark.long
@pytest.mark.parametrize('kind', ['cgan', 'spam', 'textgen'])
def test_compilations_do_not_grow_with_the_number_of_epochs(kind, tiny_sms_root, tiny_fmnist_root,
                                                             tmp_path):
  args = _kind(kind, {'sms': tiny_sms_root, 'fmnist': tiny_fmnist_root})['args']
  # A folder each: the cGAN's judge lives beside its workdir and must not be reused by the second.
  two, four = (_compilations(args, epochs, tmp_path / str(epochs) / 'run') for epochs in (2, 4))
  assert two == four, f'{two} compilations for 2 epochs, {four} for 4'
