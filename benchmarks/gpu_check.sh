#!/usr/bin/env bash
# One prepared GPU check (issue: CuPy on a real GPU). Run from the repository root on a machine with an
# NVIDIA GPU, CuPy and torch CUDA:   PYTHONPATH=. bash benchmarks/gpu_check.sh
# It runs the whole test suite on CuPy, then the benchmarks against torch CUDA (cuDNN), and writes the
# logs and summary.txt to $OUT (the device tool's output folder) or ./gpu-check/. Sized for ≤ 6 minutes.
#
# GPU_CHECK_DRY_RUN=1 checks this script's plumbing on a CPU machine: NumPy backend, tiny benchmark shapes.
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:-.}" PYTHONUNBUFFERED=1
summary="$out/summary.txt"

if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
    backend=numpy; device=cpu; bench_flags="--quick --repeats 1"; tests="tests/test_conv.py tests/test_autograd.py"
else
    python - <<'PY' || { echo "gpu_check: no usable GPU (CuPy + torch CUDA needed)" | tee "$summary"; exit 2; }
import cupy, torch
assert cupy.cuda.runtime.getDeviceCount() > 0, "CuPy sees no CUDA device"
assert torch.cuda.is_available(), "torch has no CUDA"
print("GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| CuPy", cupy.__version__,
      "| torch", torch.__version__)
PY
    backend=cupy; device=cuda; bench_flags="--repeats 5"; tests="tests"
fi

{
    echo "minseg GPU check — $(date -u +%Y-%m-%dT%H:%M:%SZ) — backend $backend"
    echo
    echo "## pytest --backend $backend"
} > "$summary"
timeout 240 python -m pytest -q -p no:cacheprovider --backend "$backend" $tests 2>&1 | tee "$out/pytest.log"
tail -n 1 "$out/pytest.log" >> "$summary"

for bench in bench_conv bench_models bench_crf; do
    [ -f "benchmarks/$bench.py" ] || continue
    echo >> "$summary"
    echo "## $bench --device $device" >> "$summary"
    timeout 120 python "benchmarks/$bench.py" --device "$device" $bench_flags 2>&1 | tee "$out/$bench.log"
    cat "$out/$bench.log" >> "$summary"
done
echo
echo "summary written to $summary"
