"""Shared plumbing for the benchmark scripts: arguments, thread limits, worker processes, timing, load.

Import this module before NumPy or torch: it fixes the BLAS/OpenMP thread counts from ``--threads``.

Fair measurement, as the timing scripts do it: each framework runs in its own worker process (no shared
thread pools or allocator state), minseg and torch take turns round by round (drift in the machine's
speed hits both), each figure is a median, and the load average is printed at the start and the end —
a ratio is printed only when the machine was idle (1-minute load ≤ 0.5) at the start, since other jobs
slow torch's threads more than NumPy's and would flatter us.
"""

import argparse
import json
import os
import subprocess
import sys
import time

IDLE_LOAD = 0.5
# glibc returns every freed block above 32 MiB to the system, so the next array of that size page-faults
# afresh; these settings keep freed memory for reuse. --malloc reuse applies them to both frameworks.
MALLOC_REUSE = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for NumPy's BLAS and torch")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per worker (after one untimed call)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of minseg/torch workers, alternated")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu: NumPy vs torch CPU; cuda: CuPy vs torch CUDA (cuDNN)")
    parser.add_argument("--malloc", choices=["default", "reuse"], default="default",
                        help="glibc allocator settings for both frameworks' workers (reuse: keep freed memory)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, to check that the script runs")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load average to fall to the idle bar")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    if extra:
        extra(parser)
    args = parser.parse_args()
    deadline = time.time() + args.wait_idle
    while not args.worker and os.getloadavg()[0] > IDLE_LOAD and time.time() < deadline:
        time.sleep(5)
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


def time_calls(fn, repeats, device="cpu"):
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call (warm pools and caches)."""
    import numpy as np

    fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def run_worker(script, spec, args):
    """Run ``script --worker spec`` in a fresh process with the same settings; its last stdout line is JSON."""
    command = [sys.executable, script, "--worker", spec, "--threads", str(args.threads), "--repeats",
               str(args.repeats), "--device", args.device] + (["--quick"] if args.quick else [])
    env = dict(os.environ, **(MALLOC_REUSE if args.malloc == "reuse" else {}))
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def alternate(script, specs, args):
    """For each spec (without the framework), run a minseg and a torch worker per round, the order swapped
    every round; return {spec: {framework: [result per round]}}."""
    results = {spec: {"minseg": [], "torch": []} for spec in specs}
    for round_index in range(args.rounds):
        order = ("minseg", "torch") if round_index % 2 == 0 else ("torch", "minseg")
        for spec in specs:
            for framework in order:
                results[spec][framework].append(run_worker(script, f"{spec}|{framework}", args))
    return results


def median_of(results, key):
    import numpy as np

    return float(np.median([r[key] for r in results]))


def load_average() -> float:
    return os.getloadavg()[0]


def header(args, what):
    """The first lines of a report: versions, settings, and the load average at the start."""
    import numpy as np

    load = load_average()
    host = os.environ.get("MINSEG_NUM_THREADS", args.threads)
    lines = [f"{what} | numpy {np.__version__} | {args.device} | threads {args.threads} (minseg host {host}) | float32 | "
             f"malloc {args.malloc} | {args.rounds} rounds alternated, {args.repeats} timed calls each, medians",
             f"load average at start: {load:.2f}"]
    if load > IDLE_LOAD:
        lines.append(f"the machine is not idle (load {load:.2f} > {IDLE_LOAD}): times are shown, ratios are not")
    return "\n".join(lines), load <= IDLE_LOAD


def ratio(ours, theirs, idle):
    return f"{ours / theirs:6.2f}" if idle else f"{'-':>6}"


def median_times(functions: dict, repeats: int, device="cpu", rounds: int = 3) -> dict:
    """Median seconds of each function, in one process (for comparisons where both sides are minseg or
    need no separate process, as bench_crf.py's): each round times every function in a warm block of
    ``repeats`` calls, and rounds alternate the blocks so drift hits all functions alike."""
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
