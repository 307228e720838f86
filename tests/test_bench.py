"""The benchmark runs every model on a tiny setting and writes JSON with every field."""

import json
import os
import subprocess
import sys

import pytest

from aml2_jax import bench
from conftest import REPO

FIELDS = {'model', 'batch_size', 'compile_s', 'ms_per_step', 'samples_per_s', 'peak_memory_mb',
          'memory_kind', 'flops_per_step', 'achieved_gflops', 'peak_gflops', 'utilisation',
          'large_matmul_gflops', 'utilisation_of_large_matmul', 'platform', 'device'}


@pytest.mark.long
@pytest.mark.skipif(not os.environ.get('AML2_DATA_DIR'), reason='needs AML2_DATA_DIR (real data)')
def test_bench_writes_a_record_per_model(tmp_path):
  out = tmp_path / 'bench.json'
  result = subprocess.run([sys.executable, '-m', 'aml2_jax.bench', '--tiny', f'--out={out}'],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  records = json.loads(out.read_text())
  assert [r['model'] for r in records] == list(bench.MODELS)
  for record in records:
    assert FIELDS <= set(record), f'{record["model"]} lacks {FIELDS - set(record)}'
    assert record['ms_per_step'] > 0 and record['flops_per_step'] > 0
    assert 0 < record['utilisation'] < 5  # A ratio of two measured rates, not a constant.
    assert 0 < record['utilisation_of_large_matmul'] < 5
    assert record['memory_kind'] == 'host_rss' and record['platform'] == 'cpu'
    assert record['samples_per_s'] == pytest.approx(
        record['batch_size'] / record['ms_per_step'] * 1000, rel=1e-2)
  assert 'ms/step' in result.stdout  # The table.


def test_matmul_rate_is_measured():
  assert bench.matmul_gflops(64, 64, 64, seconds=0.2) > 0.1


def test_side_by_side_keeps_medians_and_the_ratio_to_the_fastest_peer(monkeypatch):
  from aml2_jax import peers
  times = {'aml2_jax': [10.0, 12.0, 11.0], 'torch': [30.0, 20.0, 25.0],
           'torch_compile': [15.0, 18.0, 16.0], 'keras_jax': [40.0, 41.0, 39.0]}
  calls = []

  def fake(impl, model):
    calls.append(impl)
    return {'model': model, 'batch_size': 64, 'ms_per_step': times[impl][calls.count(impl) - 1]}

  monkeypatch.setattr(peers, 'run_peer', lambda framework, model, s, r: fake(framework, model))
  result = peers.side_by_side(['cgan'], 3, lambda model: fake('aml2_jax', model), 0.1, 1)
  cgan = result['models']['cgan']
  assert cgan['aml2_jax']['ms_per_step'] == 11.0 and cgan['torch_compile']['ms_per_step'] == 16.0
  assert cgan['fastest_peer'] == 'torch_compile'
  assert cgan['speedup_over_fastest_peer'] == pytest.approx(16.0 / 11.0, rel=1e-3)
  assert calls[:4] != calls[4:8]  # The order rotates from round to round.
  assert result['machine']['cores'] > 0
