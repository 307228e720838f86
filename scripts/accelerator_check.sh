#!/usr/bin/env bash
# The accelerator check: on a machine with a GPU or TPU, in under 10 minutes on one modern GPU,
# runs the accelerator tests, the benchmark and the full 30-epoch cGAN (with its judge and quality
# evaluation), and writes every figure into one JSON file.
#
#   pip install -r requirements.txt "jax[cuda12]==0.10.2"     # or "jax[tpu]==0.10.2"
#   bash scripts/accelerator_check.sh [OUT_DIR]               # default: runs/accelerator_check
#
# Needs the data sets (AML2_DATA_DIR or data/, see README). Writes OUT_DIR/accelerator_check.json
# and keeps the logs and the cGAN workdir beside it.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/accelerator_check}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # Report what the runs use, not a preallocated pool.

start=$(date +%s)
python -c 'import jax; print(jax.default_backend(), jax.devices())' | tee "$out/devices.txt"
python -m pytest -q -m accelerator tests/test_accelerator.py 2>&1 | tee "$out/pytest.log"
tests_rc=${PIPESTATUS[0]}
python -m aml2_jax.bench --out="$out/bench.json" 2>&1 | tee "$out/bench.log"
cgan_start=$(date +%s)
python launch.py --config=configs/cgan.py --workdir="$out/cgan" 2>&1 | tee "$out/cgan.log"
cgan_rc=${PIPESTATUS[0]}
end=$(date +%s)

python - "$out" "$tests_rc" "$cgan_rc" "$((end - cgan_start))" "$((end - start))" <<'PY'
import json, pathlib, platform, sys
import jax
out, tests_rc, cgan_rc, cgan_s, total_s = sys.argv[1:]
out = pathlib.Path(out)
read = lambda p: json.loads(p.read_text()) if p.exists() else None
record = {
    'backend': jax.default_backend(), 'devices': [d.device_kind for d in jax.devices()],
    'jax_version': jax.__version__, 'host': platform.node(),
    'accelerator_tests_exit_code': int(tests_rc), 'pytest_summary':
        (out / 'pytest.log').read_text().strip().splitlines()[-1:],
    'bench': read(out / 'bench.json'), 'cgan_exit_code': int(cgan_rc),
    'cgan_results': read(out / 'cgan' / 'results.json'), 'cgan_command_wall_s': int(cgan_s),
    'total_wall_s': int(total_s)}
(out / 'accelerator_check.json').write_text(json.dumps(record, indent=2) + '\n')
print(f'wrote {out / "accelerator_check.json"}')
PY
