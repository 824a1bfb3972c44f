"""conv2d / conv_transpose2d: minseg vs PyTorch, float32, same thread count, one process per framework.

    python benchmarks/bench_conv.py [--threads 2] [--repeats 5] [--rounds 3] [--device cpu|cuda]
                                    [--malloc default|reuse] [--quick]

Prints, per layer, the median time of forward and of forward+backward in both frameworks, their ratio
(minseg / torch; lower is better; printed only on an idle machine, see ``common.py``) and conv forward's
throughput as a fraction of one matrix product doing the same FLOPs (the im2col GEMM's ceiling).
"""

from common import alternate, header, median_of, parse_args, ratio, time_calls

ARGS = parse_args(__doc__)

import numpy as np  # noqa: E402

# name, kind, input shape, weight shape, keyword arguments
LAYERS = [
    ("U-Net 3x3", "conv", (4, 64, 128, 128), (64, 64, 3, 3), dict(padding=1)),
    ("deep 3x3", "conv", (4, 256, 64, 64), (256, 256, 3, 3), dict(padding=1)),
    ("ASPP 3x3 d12", "conv", (4, 256, 33, 33), (256, 256, 3, 3), dict(padding=12, dilation=12)),
    ("up k2s2", "transpose", (4, 128, 64, 64), (128, 64, 2, 2), dict(stride=2)),
    ("up k4s2p1", "transpose", (4, 64, 64, 64), (64, 64, 4, 4), dict(stride=2, padding=1)),
]
if ARGS.quick:
    LAYERS = [(name, kind, (1, x[1] // 4, x[2] // 4, x[3] // 4), (w[0] // 4, w[1] // 4, w[2], w[3]), kw)
              for name, kind, x, w, kw in LAYERS]


def worker(spec):
    """In a child process: time one layer in one framework; print a JSON line."""
    import json

    index, framework = spec.split("|")
    _, kind, x_shape, w_shape, kwargs = LAYERS[int(index)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) * 0.05
    if framework == "torch":
        import torch

        torch.set_num_threads(ARGS.threads)
        op = torch.nn.functional.conv2d if kind == "conv" else torch.nn.functional.conv_transpose2d
        tx, tw = torch.from_numpy(x).to(ARGS.device), torch.from_numpy(w).to(ARGS.device)
        with torch.no_grad():
            g = torch.randn(op(tx, tw, **kwargs).shape, device=ARGS.device)

        def forward():
            with torch.no_grad():
                op(tx, tw, **kwargs)

        def both():
            op(tx.detach().requires_grad_(), tw.detach().requires_grad_(), **kwargs).backward(g)
        result = {}
    else:
        import minseg
        import minseg.functional as F

        op = F.conv2d if kind == "conv" else F.conv_transpose2d
        mx, mw = minseg.to_device(x, ARGS.device), minseg.to_device(w, ARGS.device)
        with minseg.no_grad():
            out_shape = op(minseg.Tensor(mx), minseg.Tensor(mw), **kwargs).shape
        g = minseg.to_device(rng.standard_normal(out_shape, dtype=np.float32), ARGS.device)

        def forward():
            with minseg.no_grad():
                op(minseg.Tensor(mx), minseg.Tensor(mw), **kwargs)

        def both():
            op(minseg.Tensor(mx, requires_grad=True), minseg.Tensor(mw, requires_grad=True), **kwargs).backward(g)
        result = {}
        if kind == "conv":  # the im2col GEMM: (O, C·KH·KW) @ (C·KH·KW, OH·OW), once per image
            xp = minseg.get_array_module(mx)
            a = xp.asarray(rng.standard_normal((w_shape[0], int(np.prod(w_shape[1:]))), dtype=np.float32))
            b = xp.asarray(rng.standard_normal((x_shape[0], a.shape[1], out_shape[2] * out_shape[3]), dtype=np.float32))
            result["gemm"] = time_calls(lambda: xp.matmul(a, b), ARGS.repeats, ARGS.device)
    result.update(forward=time_calls(forward, ARGS.repeats, ARGS.device), both=time_calls(both, ARGS.repeats, ARGS.device))
    print(json.dumps(result))


def main():
    import os

    import minseg
    import torch

    top, idle = header(ARGS, f"bench_conv | minseg {minseg.__version__} | torch {torch.__version__}")
    print(top)
    columns = f"{'layer':<14} {'fwd ms':>9} {'torch':>9} {'ratio':>6} {'f+b ms':>9} {'torch':>9} {'ratio':>6} {'GEMM %':>7}"
    print(columns)
    print("-" * len(columns))
    results = alternate(os.path.abspath(__file__), [str(i) for i in range(len(LAYERS))], ARGS)
    for index, (name, *_rest) in enumerate(LAYERS):
        ours, theirs = results[str(index)]["minseg"], results[str(index)]["torch"]
        fwd, tfwd = median_of(ours, "forward"), median_of(theirs, "forward")
        both, tboth = median_of(ours, "both"), median_of(theirs, "both")
        gemm = f"{100 * median_of(ours, 'gemm') / fwd:6.0f}%" if "gemm" in ours[0] else f"{'-':>7}"
        print(f"{name:<14} {1e3 * fwd:9.1f} {1e3 * tfwd:9.1f} {ratio(fwd, tfwd, idle)} "
              f"{1e3 * both:9.1f} {1e3 * tboth:9.1f} {ratio(both, tboth, idle)} {gemm}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    worker(ARGS.worker) if ARGS.worker else main()
