"""conv2d / conv_transpose2d: minseg vs PyTorch, float32, same thread count, measured in one run.

    python benchmarks/bench_conv.py [--threads 2] [--repeats 3] [--device cpu|cuda] [--quick]

Prints, per layer shape, the median time of forward and forward+backward for both frameworks, their
ratio (minseg / torch; lower is better) and conv forward's throughput as a fraction of a matrix product
doing the same number of FLOPs (the im2col GEMM's ceiling).
"""

from common import median_times, parse_args

ARGS = parse_args(__doc__)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import minseg  # noqa: E402
import minseg.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
DEVICE = ARGS.device

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


def run_layer(kind, x_shape, w_shape, kwargs, repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * 0.05
    ours_op, torch_op = (F.conv2d, torch.nn.functional.conv2d) if kind == "conv" else \
        (F.conv_transpose2d, torch.nn.functional.conv_transpose2d)
    with torch.no_grad():
        out_shape = torch_op(torch.from_numpy(x), torch.from_numpy(w), **kwargs).shape
    g = rng.standard_normal(tuple(out_shape), dtype=np.float32)
    ours_x, ours_w, ours_g = (minseg.to_device(a, DEVICE) for a in (x, w, g))    # inputs placed once, untimed
    torch_x, torch_w, torch_g = (torch.from_numpy(a).to(DEVICE) for a in (x, w, g))

    def ours_forward():
        with minseg.no_grad():
            ours_op(minseg.Tensor(ours_x), minseg.Tensor(ours_w), **kwargs)

    def ours_both():
        xt, wt = minseg.Tensor(ours_x, requires_grad=True), minseg.Tensor(ours_w, requires_grad=True)
        ours_op(xt, wt, **kwargs).backward(ours_g)

    def torch_forward():
        with torch.no_grad():
            torch_op(torch_x, torch_w, **kwargs)

    def torch_both():
        xt, wt = torch_x.detach().requires_grad_(), torch_w.detach().requires_grad_()
        torch_op(xt, wt, **kwargs).backward(torch_g)

    functions = {"ours_fwd": ours_forward, "torch_fwd": torch_forward, "ours_both": ours_both,
                 "torch_both": torch_both}
    if kind == "conv":  # the im2col GEMM: (O, C·KH·KW) @ (C·KH·KW, OH·OW), once per image
        k = w_shape[1] * w_shape[2] * w_shape[3]
        xp = minseg.get_array_module(ours_x)
        a = xp.asarray(rng.standard_normal((w_shape[0], k), dtype=np.float32))
        b = xp.asarray(rng.standard_normal((x_shape[0], k, out_shape[2] * out_shape[3]), dtype=np.float32))
        functions["gemm"] = lambda: xp.matmul(a, b)
    return median_times(functions, repeats, DEVICE)


def main():
    print(f"minseg {minseg.__version__} | torch {torch.__version__} | numpy {np.__version__} | "
          f"{DEVICE} | threads {ARGS.threads} | float32 | median of 3 rounds x {ARGS.repeats}")
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
