"""Shared plumbing for the benchmark scripts: argument parsing, thread limits, timing, device sync.

Import this module before NumPy or torch: it fixes the BLAS/OpenMP thread counts from ``--threads``.
"""

import argparse
import os
import sys
import time


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for NumPy's BLAS and torch")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block (3 rounds of blocks)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu: NumPy vs torch CPU; cuda: CuPy vs torch CUDA (cuDNN)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, to check that the script runs")
    if extra:
        extra(parser)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy/torch start their thread pools
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    return args


def synchronize(device):
    """Wait for queued GPU work so that wall-clock times measure it (no-op on the CPU)."""
    if device != "cuda":
        return
    if "cupy" in sys.modules:
        sys.modules["cupy"].cuda.Device().synchronize()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def median_times(functions: dict, repeats: int, device="cpu", rounds: int = 3) -> dict:
    """Median seconds of each function. Each round times every function in a warm block of ``repeats``
    calls (one untimed call first, so thread pools and caches are warm, as in a training loop); rounds
    alternate the blocks so that drift in the machine's speed affects minseg and torch alike."""
    import numpy as np

    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            fn()
            synchronize(device)
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(samples)) for name, samples in times.items()}
