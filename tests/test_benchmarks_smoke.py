"""Smoke test of the twin-training benchmarks: each script, in --quick mode, trains minseg and the PyTorch twin
on the real data and prints the comparison table. Skips when the datasets are not on disk."""

import subprocess
import sys
from pathlib import Path

import pytest

from minseg.data import data_root

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _dataset_or_skip(name):
    try:
        return data_root(name)
    except FileNotFoundError:
        pytest.skip(f"dataset {name} not found (set MINSEG_DATA or put it in ../shared/data)")


@pytest.mark.parametrize("script, dataset, headline", [("isbi_unet.py", "isbi2012", "cell IoU"),
                                                        ("camvid.py", "camvid", "val mIoU")])
def test_quick_twin_run_prints_the_table(script, dataset, headline, tmp_path):
    pytest.importorskip("torch")
    _dataset_or_skip(dataset)
    # one thread each: on cores shared with other work, two spin-waiting OpenMP threads slow torch down many times
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--framework", "both", "--threads", "1",
               "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("framework"))
    assert headline in header
    assert any(line.startswith("minseg ") for line in lines) and any(line.startswith("torch ") for line in lines)
    assert any(line.startswith(f"difference minseg - torch: {headline}") for line in lines)
    for name in ("history_minseg.json", "history_torch.json", "loss_curves.png"):
        assert (tmp_path / name).is_file()


@pytest.mark.parametrize("script, expected", [("bench_conv.py", "ASPP 3x3 d12"), ("bench_models.py", "U-Net base"),
                                              ("bench_crf.py", "minseg permutohedral"),
                                              ("profile_step.py", "a step (mean of 1, synchronised)")])
def test_quick_timing_benchmark_runs(script, expected):
    """The timing scripts on tiny shapes (their numbers are meaningless here; gpu_check.sh runs them for real)."""
    if script != "profile_step.py":
        pytest.importorskip("torch")
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--repeats", "1", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
