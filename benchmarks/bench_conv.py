"""conv2d / conv_transpose2d: minseg vs PyTorch CPU, float32, same thread count, measured in one run.

    python benchmarks/bench_conv.py [--threads 2] [--repeats 5]

Prints, per layer shape, the median time of forward and forward+backward for both frameworks, their
ratio (minseg / torch; lower is better) and conv forward's throughput as a fraction of a NumPy matmul
doing the same number of FLOPs (the im2col GEMM's ceiling).
"""

import argparse
import os
import sys
import time


def _parse():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per block (3 rounds of blocks)")
    parser.add_argument("--quick", action="store_true", help="smaller shapes, for a smoke test")
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before NumPy/torch load their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import minseg  # noqa: E402
import minseg.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)

# name, kind, input shape, weight shape, keyword arguments
LAYERS = [
    ("U-Net 3x3", "conv", (4, 64, 256, 256), (64, 64, 3, 3), dict(padding=1)),
    ("deep 3x3", "conv", (4, 256, 64, 64), (256, 256, 3, 3), dict(padding=1)),
    ("ASPP 3x3 d12", "conv", (4, 256, 32, 32), (256, 256, 3, 3), dict(padding=12, dilation=12)),
    ("up 2x k4s2p1", "transpose", (4, 64, 64, 64), (64, 64, 4, 4), dict(stride=2, padding=1)),
]
if ARGS.quick:
    LAYERS = [(name, kind, (1, x[1] // 4, x[2] // 4, x[3] // 4), (w[0] // 4, w[1] // 4, w[2], w[3]), kw)
              for name, kind, x, w, kw in LAYERS]


def median_times(functions: dict, repeats: int, rounds: int = 3) -> dict:
    """Median seconds of each function. Each round times every function in a warm block of ``repeats``
    calls (one untimed call first, so thread pools and caches are warm, as in a training loop); rounds
    alternate the blocks so that drift in the machine's speed affects minseg and torch alike."""
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            fn()
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(samples)) for name, samples in times.items()}


def run_layer(kind, x_shape, w_shape, kwargs, repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * 0.05
    ours_op, torch_op = (F.conv2d, torch.nn.functional.conv2d) if kind == "conv" else \
        (F.conv_transpose2d, torch.nn.functional.conv_transpose2d)
    with torch.no_grad():
        out_shape = torch_op(torch.from_numpy(x), torch.from_numpy(w), **kwargs).shape
    g = rng.standard_normal(tuple(out_shape), dtype=np.float32)

    def ours_forward():
        with minseg.no_grad():
            ours_op(minseg.Tensor(x), minseg.Tensor(w), **kwargs)

    def ours_both():
        xt, wt = minseg.Tensor(x, requires_grad=True), minseg.Tensor(w, requires_grad=True)
        ours_op(xt, wt, **kwargs).backward(g)

    def torch_forward():
        with torch.no_grad():
            torch_op(torch.from_numpy(x), torch.from_numpy(w), **kwargs)

    def torch_both():
        xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
        torch_op(xt, wt, **kwargs).backward(torch.from_numpy(g))

    functions = {"ours_fwd": ours_forward, "torch_fwd": torch_forward, "ours_both": ours_both,
                 "torch_both": torch_both}
    if kind == "conv":  # the im2col GEMM: (O, C·KH·KW) @ (C·KH·KW, OH·OW), once per image
        k = w_shape[1] * w_shape[2] * w_shape[3]
        a = rng.standard_normal((w_shape[0], k), dtype=np.float32)
        b = rng.standard_normal((x_shape[0], k, out_shape[2] * out_shape[3]), dtype=np.float32)
        functions["gemm"] = lambda: np.matmul(a, b)
    return median_times(functions, repeats)


def main():
    print(f"minseg {minseg.__version__} | torch {torch.__version__} | numpy {np.__version__} | "
          f"threads {ARGS.threads} | float32 | median of 3 rounds x {ARGS.repeats}")
    header = f"{'layer':<14} {'fwd ms':>9} {'torch':>9} {'ratio':>6} {'f+b ms':>9} {'torch':>9} {'ratio':>6} {'GEMM %':>7}"
    print(header)
    print("-" * len(header))
    for name, kind, x_shape, w_shape, kwargs in LAYERS:
        t = run_layer(kind, x_shape, w_shape, kwargs, ARGS.repeats)
        gemm = f"{100 * t['gemm'] / t['ours_fwd']:6.0f}%" if "gemm" in t else f"{'-':>7}"
        print(f"{name:<14} {1e3 * t['ours_fwd']:9.1f} {1e3 * t['torch_fwd']:9.1f} {t['ours_fwd'] / t['torch_fwd']:6.2f} "
              f"{1e3 * t['ours_both']:9.1f} {1e3 * t['torch_both']:9.1f} {t['ours_both'] / t['torch_both']:6.2f} {gemm}",
              flush=True)


if __name__ == "__main__":
    main()
