"""One training step of U-Net and DeepLab v3+: minseg vs the identical PyTorch model, time and peak memory.

    python benchmarks/bench_models.py [--threads 2] [--repeats 3] [--device cpu|cuda] [--quick]

A step is forward, per-pixel cross-entropy, backward and an SGD (momentum) update. Each framework runs
in its own worker process, so the two never share thread pools or allocator state; the step memory is
the peak resident memory of the worker during the timed steps minus its resident memory just before
them (on a GPU: the allocators' peak bytes). Both models get the same weights (torch's initialisation
copied into minseg through ``load_state_dict``) and the same batch.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from common import parse_args

ARGS = parse_args(__doc__, extra=lambda p: p.add_argument("--worker", help=argparse.SUPPRESS))


MODELS = {  # name: (batch shape, number of classes)
    "U-Net base 32": ((4, 1, 256, 256), 2),
    "DeepLab v3+ R18": ((4, 3, 256, 256), 21),
}
if ARGS.quick:
    MODELS = {name: ((2, shape[1], 64, 64), classes) for name, (shape, classes) in MODELS.items()}


def build(name, framework, classes):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    import torch
    from model_twins import TorchDeepLabV3Plus, TorchUNet

    torch.manual_seed(0)
    width = 0.25 if ARGS.quick else 1.0
    if name.startswith("U-Net"):
        base = 8 if ARGS.quick else 32
        twin = TorchUNet(1, classes, base, 4, "same", "transpose", False)
    else:
        twin = TorchDeepLabV3Plus(classes, "resnet18", width, 16, None, dropout=0.1)
    if framework == "torch":
        return twin.to(ARGS.device)
    from minseg.models import DeepLabV3Plus, UNet

    if name.startswith("U-Net"):
        ours = UNet(1, classes, base_channels=base, depth=4, padding="same")
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
    """Run in a child process: time ``repeats`` training steps of one model in one framework."""
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

    from common import synchronize

    step()  # warm-up: allocations, thread pools, optimizer state
    synchronize(ARGS.device)
    gpu_peak = _start_gpu_peak(framework)
    baseline = _rss_bytes("VmRSS")
    _reset_peak_rss()
    times = []
    for _ in range(ARGS.repeats * 3):
        start = time.perf_counter()
        step()
        synchronize(ARGS.device)
        times.append(time.perf_counter() - start)
    peak = gpu_peak() if gpu_peak else _rss_bytes("VmHWM") - baseline
    print(json.dumps({"seconds": float(np.median(times)), "peak_bytes": int(peak)}))


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


def run_worker(name, framework):
    command = [sys.executable, __file__, "--threads", str(ARGS.threads), "--repeats", str(ARGS.repeats),
               "--device", ARGS.device, "--worker", f"{name}|{framework}"] + (["--quick"] if ARGS.quick else [])
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {name}/{framework} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    import numpy as np
    import torch

    import minseg

    print(f"minseg {minseg.__version__} | torch {torch.__version__} | numpy {np.__version__} | {ARGS.device} | "
          f"threads {ARGS.threads} | float32 | median of {3 * ARGS.repeats} steps, one process per framework")
    header = f"{'model':<18} {'step ms':>9} {'torch':>9} {'ratio':>6} {'peak MB':>9} {'torch':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name in MODELS:
        ours, theirs = run_worker(name, "minseg"), run_worker(name, "torch")
        mb = 2.0**20
        print(f"{name:<18} {1e3 * ours['seconds']:9.0f} {1e3 * theirs['seconds']:9.0f} "
              f"{ours['seconds'] / theirs['seconds']:6.2f} {ours['peak_bytes'] / mb:9.0f} "
              f"{theirs['peak_bytes'] / mb:9.0f} {ours['peak_bytes'] / max(theirs['peak_bytes'], 1):6.2f}", flush=True)


if __name__ == "__main__":
    worker(ARGS.worker) if ARGS.worker else main()
