"""One training step of U-Net (with and without batch norm) and DeepLab v3+: minseg vs the identical PyTorch
model, time and peak memory, one process per framework, alternated over rounds.

    python benchmarks/bench_models.py [--threads 2] [--repeats 3] [--rounds 3] [--device cpu|cuda]
                                      [--malloc default|reuse] [--models PREFIX ...] [--quick]

A step is forward, per-pixel cross-entropy, backward and an SGD (momentum) update. Both models get the
same weights (torch's initialisation copied into minseg through ``load_state_dict``) and the same batch.
Step memory is the worker's peak resident memory over the warm-up and timed steps minus its resident
memory just before them, so it counts what a step allocates whether or not the allocator hands freed
memory back (on a GPU: the allocators' peak bytes).
"""

import json
import os
import sys

from common import alternate, header, median_of, parse_args, ratio, synchronize, time_calls

ARGS = parse_args(__doc__, extra=lambda p: p.add_argument(
    "--models", nargs="+", metavar="PREFIX", help="only the models whose names start with these (default: all)"))

MODELS = {  # name: (batch shape, number of classes)
    "U-Net base 32": ((4, 1, 256, 256), 2),
    "U-Net base 32 BN": ((4, 1, 256, 256), 2),
    "DeepLab v3+ R18": ((4, 3, 256, 256), 21),
}
if ARGS.quick:
    MODELS = {name: ((2, shape[1], 64, 64), classes) for name, (shape, classes) in MODELS.items()}
if ARGS.models:
    MODELS = {name: spec for name, spec in MODELS.items() if any(name.startswith(p) for p in ARGS.models)}


def build(name, framework, classes):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    import torch
    from model_twins import TorchDeepLabV3Plus, TorchUNet

    torch.manual_seed(0)
    width = 0.25 if ARGS.quick else 1.0
    base, batch_norm = (8 if ARGS.quick else 32), name.endswith("BN")
    if name.startswith("U-Net"):
        twin = TorchUNet(1, classes, base, 4, "same", "transpose", batch_norm)
    else:
        twin = TorchDeepLabV3Plus(classes, "resnet18", width, 16, None, dropout=0.1)
    if framework == "torch":
        return twin.to(ARGS.device)
    from minseg.models import DeepLabV3Plus, UNet

    if name.startswith("U-Net"):
        ours = UNet(1, classes, base_channels=base, depth=4, padding="same", batch_norm=batch_norm)
    else:
        ours = DeepLabV3Plus(classes, backbone="resnet18", width=width, output_stride=16, dropout=0.1)
    ours.load_state_dict(twin.state_dict())
    return ours.to(ARGS.device)


def _rss_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # Linux: reset VmHWM to the current resident size
    except OSError:
        pass


def worker(spec):
    """In a child process: time training steps of one model in one framework; print a JSON line."""
    import numpy as np

    name, framework = spec.split("|")
    shape, classes = MODELS[name]
    rng = np.random.default_rng(0)
    images = rng.standard_normal(shape, dtype=np.float32)
    masks = rng.integers(0, classes, (shape[0],) + shape[2:])
    model = build(name, framework, classes)
    if framework == "torch":
        import torch

        torch.set_num_threads(ARGS.threads)
        x, y = torch.from_numpy(images).to(ARGS.device), torch.from_numpy(masks).to(ARGS.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.functional.cross_entropy
    else:
        import minseg
        import minseg.functional as F
        from minseg.optim import SGD

        x, y = minseg.tensor(images, device=ARGS.device), minseg.tensor(masks, device=ARGS.device)
        optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = F.cross_entropy

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    synchronize(ARGS.device)
    gpu_peak = _start_gpu_peak(framework)
    baseline = _rss_bytes("VmRSS")
    _reset_peak_rss()
    seconds = time_calls(step, ARGS.repeats, ARGS.device)   # the untimed first step is inside the peak too
    peak = gpu_peak() if gpu_peak else _rss_bytes("VmHWM") - baseline
    print(json.dumps({"seconds": seconds, "peak_bytes": int(peak)}))


def _start_gpu_peak(framework):
    """On a GPU, reset the allocator's peak counter and return a function reading it."""
    if ARGS.device != "cuda":
        return None
    if framework == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.max_memory_allocated
    import cupy

    pool = cupy.get_default_memory_pool()
    return pool.total_bytes  # CuPy's pool only grows: its size after the steps is their peak


def main():
    import minseg
    import torch

    top, idle = header(ARGS, f"bench_models | minseg {minseg.__version__} | torch {torch.__version__}")
    print(top)
    columns = f"{'model':<18} {'step ms':>9} {'torch':>9} {'ratio':>6} {'peak MB':>9} {'torch':>9} {'ratio':>6}"
    print(columns)
    print("-" * len(columns))
    results = alternate(os.path.abspath(__file__), list(MODELS), ARGS)
    mb = 2.0**20
    for name in MODELS:
        ours, theirs = results[name]["minseg"], results[name]["torch"]
        s, ts = median_of(ours, "seconds"), median_of(theirs, "seconds")
        m, tm = median_of(ours, "peak_bytes"), max(median_of(theirs, "peak_bytes"), 1)
        print(f"{name:<18} {1e3 * s:9.0f} {1e3 * ts:9.0f} {ratio(s, ts, idle)} {m / mb:9.0f} {tm / mb:9.0f} "
              f"{ratio(m, tm, idle)}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    worker(ARGS.worker) if ARGS.worker else main()
