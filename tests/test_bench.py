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
