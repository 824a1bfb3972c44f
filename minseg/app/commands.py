"""What the ``minseg`` commands do, as functions of plain arguments: ``cli.py`` parses the options, calls
one of these and prints what it returns.

Each function checks everything it was given before it writes anything, and reports a problem with the
user's input as a ``UserError`` (``runs.py`` lists the files of a run folder and the rules that protect a
user's files).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np

from .. import __version__
from ..core.errors import UserError
from . import registry
from .runs import (EVALUATION, PREDICTION, WRITTEN_BY, RunConfig, check_replaceable, check_settings,
                   checkpoint_path, load_checkpoint, new_run_problem, read_config, require, run_length, write_json,
                   write_png)


def check_device(device: str) -> str:
    """``--device`` checked by moving a number there (CuPy missing, no such GPU…) → its canonical name."""
    from ..core.backend import canonical_device, to_device

    try:
        to_device(np.zeros(1), device)
        return canonical_device(device)
    except (ValueError, RuntimeError, TypeError) as error:
        raise UserError(f"--device {device}: {error}") from None


def _build_dataset(name, split, **kwargs):
    try:
        return registry.build_dataset(name, split, **kwargs)
    except (FileNotFoundError, ValueError) as error:  # a missing folder or file, a file of the wrong kind
        raise UserError(str(error)) from None


# ------------------------------------------------------------------ train
def open_run(out: str):
    """The run in ``out`` to resume → (its checked config, its checkpoint, the steps it has made)."""
    path = os.path.join(out, "checkpoint.npz")
    if not os.path.isfile(path):
        raise UserError(f"--resume: no checkpoint.npz in {out}")
    config, state = read_config(out), load_checkpoint(path, "--resume")
    done = state.get("step")
    if not isinstance(done, (int, np.integer)) or done < 1:
        raise UserError(f"--resume: the checkpoint in {out} has no valid step count (got {done!r:.40})")
    return config, state, int(done)


def train_run(settings: RunConfig, out: str, *, iters=None, epochs=None, resumed=None, data_dir=None,
              device="cpu", quiet=False) -> dict:
    """Train a model as ``settings`` say, in the run folder ``out`` (new, or ``resumed`` = ``open_run(out)``).

    Returns the run: its folder, config, model, validation set and final metrics (also in metrics.json).
    """
    import minseg
    from ..data import DataLoader
    from ..metrics import ConfusionMatrix
    from ..optim import SGD, AdamW, PolyLR
    from .train import NonFiniteLossError, Trainer

    config, state, done = resumed or (None, None, 0)
    if resumed is None and (problem := new_run_problem(out)):
        raise UserError(problem)
    check_settings(settings, iters, epochs)
    name, weighted = settings.dataset, settings.loss == "weighted"
    common = dict(data_dir=data_dir, size=settings.image_size, weight_maps=weighted, seed=settings.seed)
    train_set = _build_dataset(name, "train", augment=settings.augment, **common)
    val_set = _build_dataset(name, "val", **common)
    batch_size = settings.batch_size
    if batch_size > len(train_set):
        raise UserError(f"--batch-size {batch_size} is larger than the training set ({len(train_set)} images of "
                        f"{name}); every batch must be full")
    image = train_set[0][0]
    for key, value in (("in_channels", int(image.shape[0])), ("num_classes", int(train_set.num_classes))):
        if config is not None and config[key] != value:
            raise UserError(f"--resume: config.json in {out} has {key} = {config[key]}, but {name} gives {value}")
    minseg.manual_seed(settings.seed)
    model = registry.build_model(settings.model, image.shape[0], train_set.num_classes, settings.width,
                                 settings.backbone)
    train_loader = DataLoader(train_set, batch_size, shuffle=True, drop_last=True, seed=settings.seed, prefetch=2)
    val_loader = DataLoader(val_set, batch_size if registry.DATASET_ENTRIES[name].fixed_size else 1)
    steps = run_length(iters, epochs, config, done, len(train_loader), out)
    optimizer = (AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4) if settings.optimizer == "adamw"
                 else SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=1e-4))
    ignore = int(train_set.ignore_index)
    trainer = Trainer(model, registry.build_loss(settings.loss, ignore, steps), optimizer, train_loader,
                      scheduler=PolyLR(optimizer, total_iters=steps), val_loader=val_loader,
                      metrics=lambda: ConfusionMatrix(int(train_set.num_classes), ignore_index=ignore),
                      max_steps=steps, eval_every=max(1, steps // 4), checkpoint_every=max(1, min(100, steps // 4)),
                      out_dir=out, device=device, seed=settings.seed, log_every=1, progress=not quiet)
    if state is not None:
        try:
            trainer.load_state_dict(state)  # the check only: fit(resume=True) reads the checkpoint again
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            raise UserError(f"--resume: the checkpoint in {out} does not fit this run: {str(error)[:300]}") from None
    config = {**asdict(settings), "in_channels": int(image.shape[0]), "num_classes": int(train_set.num_classes),
              "ignore_index": ignore, "class_names": list(train_set.class_names),
              "palette": np.asarray(train_set.palette).tolist(), "steps": steps, "minseg": __version__}
    write_json(os.path.join(out, "config.json"), config)  # everything was checked: the first write
    started = time.perf_counter()
    try:
        history = trainer.fit(resume=resumed is not None)
    except NonFiniteLossError as error:
        raise UserError(f"{error} (try a smaller --lr than {settings.lr})") from None
    metrics = {**history["eval"][-1], "train_seconds": round(time.perf_counter() - started, 1)}
    write_json(os.path.join(out, "metrics.json"), metrics)
    return {"out": out, "config": config, "model": model, "val_set": val_set, "metrics": metrics, "steps": steps}


# ------------------------------------------------------------------ evaluate / predict
def load_run(checkpoint: str):
    """``--checkpoint`` (a run folder or its checkpoint.npz) → (run folder, checked config, model state)."""
    path = checkpoint_path(checkpoint)
    run_dir = os.path.dirname(os.path.abspath(path))
    return run_dir, read_config(run_dir), load_checkpoint(path)["model"]


def rebuild_model(config, state, device):
    """The run's model with its trained weights, on ``device``, in eval mode."""
    model = registry.build_model(config["model"], config["in_channels"], config["num_classes"], config["width"],
                                 config["backbone"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise UserError(f"the checkpoint does not fit a {config['model']} model: {str(error)[:300]}") from None
    return model.to(device).eval()


def predict_probabilities(model, image, config, device, window=None, use_tta=False, use_crf=False):
    """``predict_image`` for a run's model: class probabilities (C, H, W) on the CPU for one image (§7.7)."""
    from ..core.backend import to_device
    from ..inference import predict_image

    prediction = predict_image(model, to_device(image, device), multiple=registry.input_multiple(config["model"]),
                               window=window, flips=("h",) if use_tta else (), crf=use_crf)
    return to_device(prediction.probabilities, "cpu")


def evaluate_run(checkpoint, *, dataset=None, data_dir=None, out=None, window=None, use_tta=False, use_crf=False,
                 device="cpu", quiet=False) -> tuple:
    """Score a trained run on a validation split → (the scores, the JSON file they were written to)."""
    from tqdm.auto import tqdm

    from ..metrics import ConfusionMatrix, boundary_f1

    run_dir, config, state = load_run(checkpoint)
    path = out or os.path.join(run_dir, "evaluation.json")
    check_replaceable(path, EVALUATION, "--out", legacy_keys=("miou", "per_class_iou", "sliding_window", "tta", "crf"))
    model = rebuild_model(config, state, device)
    images = _build_dataset(dataset or config["dataset"], "val", data_dir=data_dir, size=config["image_size"],
                            seed=config["seed"])
    if images.num_classes != config["num_classes"]:
        raise UserError(f"--dataset {dataset} has {images.num_classes} classes; the model predicts "
                        f"{config['num_classes']}")
    if images[0][0].shape[0] != config["in_channels"]:
        raise UserError(f"--dataset {dataset} has {images[0][0].shape[0]}-channel images; the model reads "
                        f"{config['in_channels']}")
    matrix = ConfusionMatrix(config["num_classes"], ignore_index=config["ignore_index"])
    boundary_scores = []
    for index in tqdm(range(len(images)), desc="evaluate", unit="image", disable=quiet):
        image, mask = images[index][:2]
        labels = predict_probabilities(model, image, config, device, window, use_tta, use_crf).argmax(axis=0)
        matrix.update(labels[None], mask[None])
        boundary_scores.append(boundary_f1(labels[None], mask[None], config["num_classes"],
                                           ignore_index=config["ignore_index"]))
    scores = matrix.compute()
    result = {"miou": float(scores["miou"]), "mean_dice": float(scores["mean_dice"]),
              "pixel_accuracy": float(scores["pixel_accuracy"]), "boundary_f1": float(np.nanmean(boundary_scores)),
              "per_class_iou": {name: float(value) for name, value in zip(config["class_names"], scores["iou"])},
              "images": len(images), "sliding_window": window, "tta": use_tta, "crf": use_crf,
              "checkpoint": os.path.join(run_dir, "checkpoint.npz"), WRITTEN_BY: EVALUATION}
    write_json(path, result)
    return result, path


MIN_IMAGE_SIDE = 16


def read_image(path, channels):
    """An image file → float32 (channels, H, W) in [0, 1]; 16-bit greyscale is scaled by 1/65535, not clipped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I;16") or image.mode == "I":
                values = np.asarray(image).astype(np.float32)
                if values.min() < 0 or values.max() > 65535:
                    raise UserError(f"image {path} holds 32-bit values ({values.min():.0f}..{values.max():.0f}); "
                                    "expected an 8- or 16-bit image")
                grey = values / 65535.0
                array = grey if channels == 1 else np.repeat(grey[..., None], 3, axis=-1)
            elif image.mode == "F":
                raise UserError(f"image {path} holds 32-bit floats (mode F); save it as an 8- or 16-bit image")
            else:
                array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise UserError(f"cannot read image {path}: {error}") from None
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise UserError(f"image {path} is {array.shape[1]}×{array.shape[0]}; the model needs at least "
                        f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels")
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def predict_files(checkpoint, paths, *, out=None, window=None, use_tta=False, device="cpu"):
    """Label PNGs (the run's palette) and overlays for the images at ``paths``; yields, as each image is
    written, (its path, its label PNG, its overlay). Every input is read and every output checked first."""
    from PIL import Image

    run_dir, config, state = load_run(checkpoint)
    out = out or os.path.join(run_dir, "predictions")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file; expected a folder for the predictions")
    images, sources = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in sources:
            raise UserError(f"IMAGE {sources[stem]} and {path} would both write {stem}_labels.png; rename one "
                            "or predict them in two runs with different --out")
        sources[stem] = path
        outputs = [os.path.join(out, f"{stem}_{kind}.png") for kind in ("labels", "overlay")]
        for output in outputs:
            check_replaceable(output, PREDICTION, "--out: the prediction")
        images.append((path, read_image(path, config["in_channels"]), outputs))
    model = rebuild_model(config, state, device)
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(config["palette"])] = np.asarray(config["palette"], np.uint8)
    for path, image, (label_path, overlay_path) in images:
        labels = predict_probabilities(model, image, config, device, window, use_tta).argmax(axis=0)
        label_image = Image.fromarray(labels.astype(np.uint8), mode="P")
        label_image.putpalette(palette.ravel().tolist())
        write_png(label_path, label_image, PREDICTION)
        rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
        overlay = 0.55 * rgb.transpose(1, 2, 0) * 255 + 0.45 * palette[labels]
        write_png(overlay_path, Image.fromarray(overlay.clip(0, 255).astype(np.uint8)), PREDICTION)
        yield path, label_path, overlay_path


# ------------------------------------------------------------------ demo
DEMO = RunConfig(model="unet", dataset="cells", loss="weighted", width=0.25, image_size=96, batch_size=8, lr=3e-3,
                 optimizer="adamw")


def free_folder(base: str) -> str:
    """``base``, or ``base-1``, ``base-2``… — the first a new run may go into (a demo never overwrites)."""
    candidate, number = base, 0
    while new_run_problem(candidate):
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def demo_run(steps: int, out: str, *, seed=0, device="cpu", quiet=False) -> dict:
    """Train ``DEMO`` (a small U-Net, U-Net's weighted loss, §7.3) on synthetic touching cells in a free
    folder beside ``out``, score its foreground on the held-out images and draw three of them."""
    from dataclasses import replace

    from ..metrics import ConfusionMatrix
    from .viz import plot_examples

    require(isinstance(steps, int) and steps >= 1, "--steps", "a positive integer", steps)
    run = train_run(replace(DEMO, seed=seed), free_folder(out), iters=steps, device=device, quiet=quiet)
    matrix, rows = ConfusionMatrix(2), []
    for index in range(len(run["val_set"])):
        image, mask, weights = run["val_set"][index]
        labels = predict_probabilities(run["model"].eval(), image, run["config"], device).argmax(axis=0)
        matrix.update(labels[None], mask[None])
        if index < 3:
            rows.append({"image": image, "ground truth": mask, "prediction": labels, "weight map": weights})
    figure = plot_examples(rows, os.path.join(run["out"], "predictions.png"), "U-Net on held-out synthetic cells")
    scores = matrix.compute()
    foreground = {"foreground_iou": float(scores["iou"][1]), "foreground_dice": float(scores["dice"][1])}
    write_json(os.path.join(run["out"], "metrics.json"), {**run["metrics"], **foreground})
    return {**run, **foreground, "figure": figure}
