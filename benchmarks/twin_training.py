"""Train one model in minseg and its PyTorch twin on the very same batches, and compare the results.

Shared by ``isbi_unet.py`` and ``camvid.py``. A script describes its task with module-level names (listed in
``main``); this module does the rest:

1. the parent process prepares the data once, in NumPy: every training batch of the run is drawn from
   seeded generators (data order and augmentation) and written to ``.npy`` files in a temporary folder,
   with the evaluation images and the initial weights (minseg's initialisation, ``minseg.save``);
2. each framework trains in its own worker process (``--worker``), with the thread limits set before
   NumPy or torch start: it loads the initial weights (the torch twin through ``load_state_dict`` with the
   same keys), reads the batches memory-mapped, runs Adam with a poly learning-rate decay on the
   (weighted) cross-entropy, then predicts the evaluation images in eval mode and saves the label maps;
3. the parent scores both predictions with the same minseg metrics, writes ``history_<framework>.json``
   and one plot of both loss curves to ``--out``, and prints the comparison table.

Both workers therefore see identical arrays; what differs is only the arithmetic of the two frameworks
(float32 rounding, summation order), which grows into small differences over many steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRAMEWORKS = ("minseg", "torch")
BATCH_ARRAYS = ("images", "masks", "weights")  # weights only with a weighted loss
IGNORE_INDEX = 255
POLY_POWER = 0.9  # DeepLab's "poly" learning-rate decay


# ------------------------------------------------------------------------------------------- options
def parse_args(task):
    """Common options plus ``task.add_options``; options left unset take ``task.DEFAULTS`` (``task.QUICK``
    with ``--quick``)."""
    parser = argparse.ArgumentParser(description=task.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)

    def option(name, kind, help_text, **extra):
        key = name.lstrip("-").replace("-", "_")
        full, quick = task.DEFAULTS[key], task.QUICK[key]
        parser.add_argument(name, type=kind, help=f"{help_text} (default {full}; --quick: {quick})", **extra)

    option("--steps", int, "optimizer steps")
    option("--batch-size", int, "images per batch")
    option("--lr", float, "Adam's initial learning rate, decayed to 0 by DeepLab's poly schedule (power 0.9)")
    task.add_options(option)
    parser.add_argument("--framework", choices=FRAMEWORKS + ("both",), default="both",
                        help="train in minseg, in torch, or both (each in its own process) and compare")
    parser.add_argument("--out", default=f"runs/{task.NAME}", help="folder for history_<framework>.json and the "
                        "loss plot (default %(default)s)")
    parser.add_argument("--data-dir", help="folder holding the dataset (default: $MINSEG_DATA or ../shared/data)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per framework (default 2; use 1 on cores "
                        "busy with other work, where torch's spin-waiting OpenMP threads slow it down many times)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, data order and "
                        "augmentation (default 0)")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny inputs, to check that it runs")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name, value in (task.QUICK if args.quick else task.DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# ------------------------------------------------------------------------------------------- data
def write_batches(workdir, sample, train_count, steps, batch_size, rng):
    """Draw every batch of the run once and store it as ``<name>.npy`` of shape (steps, batch, ...).

    The order is a fresh permutation of the ``train_count`` training samples per epoch; ``sample(index,
    rng)`` returns one augmented sample (image, mask[, weights]) drawing its randomness from ``rng``.
    """
    import numpy as np

    order = np.concatenate([rng.permutation(train_count) for _ in range(-(-steps * batch_size // train_count))])
    stores = None
    for position, index in enumerate(order[:steps * batch_size]):
        arrays = sample(int(index), rng)
        if stores is None:
            stores = [np.lib.format.open_memmap(Path(workdir) / f"{name}.npy", mode="w+", dtype=array.dtype,
                                                shape=(steps, batch_size) + array.shape)
                      for name, array in zip(BATCH_ARRAYS, arrays)]
        for store, array in zip(stores, arrays):
            store[divmod(position, batch_size)] = array
    for store in stores:
        store.flush()


# ------------------------------------------------------------------------------------------- workers
class MinsegTrainer:
    """Adam steps with DeepLab's poly decay (lr · (1 − t/steps)^0.9), and eval-mode predictions, for minseg."""

    def __init__(self, model, lr, steps):
        from minseg.optim import Adam, PolynomialLR

        self.model, self.optimizer = model, Adam(model.parameters(), lr=lr)
        self.schedule = PolynomialLR(self.optimizer, total_iters=steps, power=POLY_POWER)

    def step(self, images, masks, weights=None):
        import minseg
        import minseg.functional as F
        from minseg.losses import weighted_cross_entropy

        logits, target = self.model(minseg.tensor(images)), minseg.tensor(masks)
        loss = (F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX) if weights is None else
                weighted_cross_entropy(logits, target, weights, ignore_index=IGNORE_INDEX))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        return float(loss.item())

    def predict(self, images):
        import minseg

        self.model.eval()
        with minseg.no_grad():
            return self.model(minseg.tensor(images)).data.argmax(axis=1)


class TorchTrainer:
    """The same for the torch twin; the weighted loss is minseg's ``weighted_cross_entropy`` "mean":
    Σ w·CE / Σ w over the pixels that are not ignored."""

    def __init__(self, model, lr, steps):
        import torch

        self.torch, self.model = torch, model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.schedule = torch.optim.lr_scheduler.PolynomialLR(self.optimizer, total_iters=steps, power=POLY_POWER)

    def step(self, images, masks, weights=None):
        torch = self.torch
        logits, target = self.model(torch.from_numpy(images)), torch.from_numpy(masks)
        if weights is None:
            loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        else:
            weights = torch.from_numpy(weights).to(logits.dtype) * (target != IGNORE_INDEX)
            per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
            loss = (per_pixel * weights).sum() / weights.sum().clamp_min(1e-12)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        return float(loss.item())

    def predict(self, images):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(images)).argmax(dim=1).numpy()


def load_initial_weights(model, framework, workdir):
    """Give ``model`` the initial weights the parent saved (minseg's initialisation)."""
    import numpy as np

    import minseg

    state = minseg.load(Path(workdir) / "init.npz")
    if framework == "torch":
        import torch

        state = {key: torch.from_numpy(np.asarray(value)) for key, value in state.items()}
    model.load_state_dict(state)
    return model


def worker(task, args):
    """Train ``args.worker``'s model on the stored batches; save its losses, timings and predictions."""
    import numpy as np

    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    batches = [np.load(workdir / f"{name}.npy", mmap_mode="r") for name in BATCH_ARRAYS
               if (workdir / f"{name}.npy").is_file()]
    model = load_initial_weights(task.build(args, args.worker), args.worker, workdir)
    trainer = (TorchTrainer if args.worker == "torch" else MinsegTrainer)(model, args.lr, args.steps)
    losses, seconds = [], []
    for step in range(args.steps):
        arrays = [np.array(batch[step]) for batch in batches]  # writable copies out of the memory maps
        arrays[1] = arrays[1].astype(np.int64)  # masks are stored as uint8
        start = time.perf_counter()
        losses.append(trainer.step(*arrays))
        seconds.append(time.perf_counter() - start)
        if (step + 1) % max(1, args.steps // 10) == 0 or step + 1 == args.steps:
            print(f"  {args.worker:>6} step {step + 1}/{args.steps}  loss {losses[-1]:.4f}  "
                  f"{sum(seconds) / len(seconds):.2f} s/step", file=sys.stderr, flush=True)
    start = time.perf_counter()
    images = np.load(workdir / "eval_images.npy")
    predictions = np.concatenate([trainer.predict(images[i:i + task.EVAL_BATCH])
                                  for i in range(0, len(images), task.EVAL_BATCH)])
    eval_seconds = time.perf_counter() - start
    np.save(workdir / f"{args.worker}_predictions.npy", predictions.astype(np.uint8))
    history = {"loss": losses, "step_seconds": seconds, "train_seconds": sum(seconds), "eval_seconds": eval_seconds}
    (workdir / f"{args.worker}_history.json").write_text(json.dumps(history))


# ------------------------------------------------------------------------------------------- parent
def run_worker(framework, args, workdir):
    """Run one framework's worker in a child process with the thread limits in its environment."""
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(args.threads)  # read when NumPy / torch start their thread pools
    command = [sys.executable, sys.argv[0], *sys.argv[1:], "--worker", framework, "--workdir", str(workdir)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    history = json.loads((workdir / f"{framework}_history.json").read_text())
    history["worker_seconds"] = time.perf_counter() - start
    return history


def plot_losses(results, path, title):
    """One figure: the training loss of each framework per step (thin) and its running mean (thick)."""
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for (framework, history), colour, style in zip(results.items(), ("tab:blue", "tab:orange"), ("-", "--")):
        loss = np.asarray(history["loss"])
        window = max(1, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        axes.plot(np.arange(1, len(loss) + 1), loss, color=colour, alpha=0.3, linewidth=0.8)
        axes.plot(np.arange(window, len(loss) + 1), smooth, color=colour, linestyle=style, linewidth=2,
                  label=f"{framework} (running mean of {window})")
    axes.set(title=title, xlabel="step", ylabel="training loss", yscale="log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_table(task, args, results, prep_seconds):
    """The comparison: metrics, final loss and times per framework, then the differences."""
    names = [name for name, value in next(iter(results.values()))["metrics"].items() if isinstance(value, float)]
    width = max(12, *(len(n) + 1 for n in names))
    header = f"{'framework':<10}" + "".join(f"{n:>{width}}" for n in names) + \
        f"{'final loss':>11}{'train s':>9}{'s/step':>8}{'eval s':>8}"
    print(f"\n{task.describe(args)}")
    print(f"data prepared once in {prep_seconds:.0f} s | threads per framework: {args.threads} | same initial "
          f"weights, batches and augmentation draws")
    print(header)
    print("-" * len(header))
    for framework, result in results.items():
        tail = result["loss"][-max(1, len(result["loss"]) // 10):]
        print(f"{framework:<10}" + "".join(f"{result['metrics'][n]:>{width}.4f}" for n in names)
              + f"{sum(tail) / len(tail):>11.4f}{result['train_seconds']:>9.0f}"
              + f"{result['train_seconds'] / len(result['loss']):>8.2f}{result['eval_seconds']:>8.1f}")
    if len(results) == 2:
        ours, theirs = results["minseg"], results["torch"]
        headline = names[0]
        gap = 100 * (ours["metrics"][headline] - theirs["metrics"][headline])
        agree = float((ours["predictions"] == theirs["predictions"]).mean())
        print(f"difference minseg - torch: {headline} {gap:+.2f} points; step-1 loss {ours['loss'][0]:.6f} vs "
              f"{theirs['loss'][0]:.6f}; predictions agree on {100 * agree:.2f}% of evaluation pixels; "
              f"train time ratio {ours['train_seconds'] / theirs['train_seconds']:.2f}")
    print("(final loss: mean of the last 10% of steps)")


def main(task):
    """Entry point of a twin-training script; ``task`` is its module, which provides ``NAME``, ``__doc__``,
    ``DEFAULTS`` and ``QUICK`` (option values), ``EVAL_BATCH`` (images per prediction call),
    ``add_options(option)``, ``prepare(args) -> (sample, train_count, eval_images, eval_masks)``,
    ``build(args, framework)``, ``score(predictions, masks) -> dict`` (the first entry is the headline
    metric) and ``describe(args)``."""
    args = parse_args(task)
    if args.worker:
        return worker(task, args)
    import numpy as np

    import minseg

    frameworks = FRAMEWORKS if args.framework == "both" else (args.framework,)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{task.NAME}-") as temporary:
        workdir = Path(temporary)
        start = time.perf_counter()
        sample, train_count, eval_images, eval_masks = task.prepare(args)
        write_batches(workdir, sample, train_count, args.steps, args.batch_size, np.random.default_rng(args.seed))
        np.save(workdir / "eval_images.npy", eval_images)
        minseg.manual_seed(args.seed)
        minseg.save(task.build(args, "minseg").state_dict(), workdir / "init.npz")
        prep_seconds = time.perf_counter() - start
        print(f"prepared {args.steps} batches of {args.batch_size} in {prep_seconds:.0f} s", file=sys.stderr)
        results = {}
        for framework in frameworks:
            results[framework] = run_worker(framework, args, workdir)
            results[framework]["predictions"] = np.load(workdir / f"{framework}_predictions.npy")
            results[framework]["metrics"] = task.score(results[framework]["predictions"], eval_masks)
    config = {k: v for k, v in vars(args).items() if k not in ("worker", "workdir")}
    for framework, result in results.items():
        record = {key: value for key, value in result.items() if key != "predictions"}
        (out / f"history_{framework}.json").write_text(json.dumps({"framework": framework, "config": config,
                                                                  **record}, indent=1))
    plot_losses(results, out / "loss_curves.png", task.describe(args).split("|")[0].strip())
    print_table(task, args, results, prep_seconds)
    print(f"histories and loss_curves.png in {out}")
