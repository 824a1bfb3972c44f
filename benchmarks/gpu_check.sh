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
    cli_steps=2
else
    python - <<'PY' || { echo "gpu_check: no usable GPU (CuPy + torch CUDA needed)" | tee "$summary"; exit 2; }
import cupy, torch
assert cupy.cuda.runtime.getDeviceCount() > 0, "CuPy sees no CUDA device"
assert torch.cuda.is_available(), "torch has no CUDA"
print("GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| CuPy", cupy.__version__,
      "| torch", torch.__version__)
PY
    backend=cupy; device=cuda; bench_flags="--repeats 5"; tests="tests"; cli_steps=200
fi
# the notebooks need nbmake, which a device image may lack: only tests/ runs here, with the ini's
# "--nbmake" dropped; pytest-xdist, where installed, spreads the tests over 8 workers
pytest_flags=(-q -p no:cacheprovider -o "addopts=-ra" --backend "$backend")
if python -c "import xdist" 2>/dev/null && [ "$backend" = cupy ]; then
    # 8 workers × 2 BLAS threads on the device's 16 cores: the CPU-only tests (the demo) need not crawl
    pytest_flags+=(-n 8)
    export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
fi
python -c "import pytest_timeout" 2>/dev/null && pytest_flags+=(--timeout 120)

{
    echo "minseg GPU check — $(date -u +%Y-%m-%dT%H:%M:%SZ) — backend $backend"
    echo
    echo "## pytest --backend $backend"
} > "$summary"
timeout 270 python -m pytest "${pytest_flags[@]}" $tests 2>&1 | tee "$out/pytest.log"
tail -n 1 "$out/pytest.log" >> "$summary"

for bench in bench_conv bench_models bench_crf profile_step; do
    [ -f "benchmarks/$bench.py" ] || continue
    echo >> "$summary"
    echo "## $bench --device $device" >> "$summary"
    timeout 120 python "benchmarks/$bench.py" --device "$device" $bench_flags 2>&1 | tee "$out/$bench.log"
    cat "$out/$bench.log" >> "$summary"
done

# the CLI on the GPU: the full default demo, then a few DeepLab v3+ steps with a resume
runs=$(mktemp -d)
{
    echo
    echo "## minseg demo --device $device --steps $cli_steps"
    started=$SECONDS
    timeout 150 python -m minseg.cli demo --device "$device" --quiet --steps "$cli_steps" --out "$runs/demo" \
        2>&1 | tail -n 4
    echo "wall $((SECONDS - started)) s"
    echo
    echo "## minseg train --model deeplabv3plus --dataset shapes --device $device (then --resume)"
    timeout 60 python -m minseg.cli train --model deeplabv3plus --dataset shapes --device "$device" --quiet \
        --iters 4 --batch-size 4 --out "$runs/train" 2>&1 | tail -n 2
    timeout 60 python -m minseg.cli train --model deeplabv3plus --dataset shapes --device "$device" --quiet \
        --iters 8 --batch-size 4 --out "$runs/train" --resume 2>&1 | tail -n 2
} 2>&1 | tee -a "$summary"
rm -rf "$runs"
echo
echo "summary written to $summary"
