"""The ``minseg`` command: ``demo``, ``train``, ``evaluate``, ``predict``.

Every run lives in one folder: ``config.json`` (what was trained, so evaluate/predict can rebuild the
model), ``checkpoint.npz``, ``history.json``, ``curves.png``, ``metrics.json`` and figures. Errors that
come from the user's input (an unknown dataset folder, a checkpoint of another model…) end the command
with one line on stderr and a non-zero exit status, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from . import __version__

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


# ------------------------------------------------------------------ files of a run
def _write_json(path, data) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(data, file, indent=2)
    os.replace(temporary, path)


def _load_run(checkpoint: str):
    """``checkpoint`` is a run folder or its checkpoint.npz → (run folder, config, model state)."""
    import minseg

    path = os.path.join(checkpoint, "checkpoint.npz") if os.path.isdir(checkpoint) else checkpoint
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no checkpoint.npz there")
    run_dir = os.path.dirname(os.path.abspath(path))
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no config.json beside it (was it written by minseg train?)")
    with open(config_path) as file:
        config = json.load(file)
    return run_dir, config, minseg.load(path)["model"]


def _rebuild_model(config, state, device):
    from .registry import build_model

    model = build_model(config["model"], config["in_channels"], config["num_classes"], config["width"],
                        config["backbone"])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the checkpoint does not fit a {config['model']} model: {str(error)[:300]}") from None
    return model.to(device).eval()


# ------------------------------------------------------------------ train
def train(args) -> dict:
    """Train a model on a dataset; returns the final metrics (also written to metrics.json)."""
    import minseg
    from .data import DataLoader
    from .metrics import ConfusionMatrix
    from .optim import SGD, AdamW, PolyLR
    from .registry import build_dataset, build_loss, build_model, input_multiple
    from .train import Trainer

    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}")
    if os.path.exists(os.path.join(out, "checkpoint.npz")) and not args.resume:
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or --out for a new one")
    if args.resume and not os.path.exists(os.path.join(out, "checkpoint.npz")):
        raise FileNotFoundError(f"--resume: no checkpoint in {out}")
    multiple = input_multiple(args.model)
    if args.image_size % multiple:
        raise ValueError(f"--image-size {args.image_size} must be a multiple of {multiple} for {args.model}")
    weighted = args.loss == "weighted"
    common = dict(data_dir=args.data_dir, size=args.image_size, weight_maps=weighted, seed=args.seed)
    train_set = build_dataset(args.dataset, "train", augment=not args.no_augment, **common)
    val_set = build_dataset(args.dataset, "val", **common)
    image = train_set[0][0]
    minseg.manual_seed(args.seed)
    model = build_model(args.model, image.shape[0], train_set.num_classes, args.width, args.backbone)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed, prefetch=2)
    val_loader = DataLoader(val_set, args.batch_size if args.dataset in ("cells", "shapes", "isbi2012") else 1)
    steps = args.iters or args.epochs * len(train_loader)
    optimizer = (AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4) if args.optimizer == "adamw"
                 else SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4))
    config = {"model": args.model, "dataset": args.dataset, "loss": args.loss, "width": args.width,
              "backbone": args.backbone, "image_size": args.image_size, "in_channels": int(image.shape[0]),
              "num_classes": int(train_set.num_classes), "ignore_index": int(train_set.ignore_index),
              "class_names": list(train_set.class_names), "palette": np.asarray(train_set.palette).tolist(),
              "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer, "steps": steps,
              "seed": args.seed, "minseg": __version__}
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "config.json"), config)
    ignore = config["ignore_index"]
    trainer = Trainer(model, build_loss(args.loss, ignore, steps), optimizer, train_loader,
                      scheduler=PolyLR(optimizer, total_iters=steps), val_loader=val_loader,
                      metrics=lambda: ConfusionMatrix(config["num_classes"], ignore_index=ignore), max_steps=steps,
                      eval_every=max(1, steps // 4), checkpoint_every=max(1, min(100, steps // 4)), out_dir=out,
                      device=args.device, seed=args.seed, log_every=1, progress=not args.quiet)
    started = time.perf_counter()
    history = trainer.fit(resume=args.resume)
    metrics = {**history["eval"][-1], "train_seconds": round(time.perf_counter() - started, 1)}
    _write_json(os.path.join(out, "metrics.json"), metrics)
    print(f"trained {args.model} on {args.dataset} for {steps} steps: val loss {metrics['loss']:.4f}, "
          f"mIoU {metrics['miou']:.4f}, mean Dice {metrics['mean_dice']:.4f}")
    print(f"run folder: {out} (config.json, checkpoint.npz, history.json, curves.png, metrics.json)")
    return {"out": out, "config": config, "model": model, "val_set": val_set, "metrics": metrics}


# ------------------------------------------------------------------ evaluate / predict
def _predict(model, image, config, device, sliding_window=None, use_tta=False, use_crf=False):
    """Class probabilities (C, H, W) for one image (C_in, H, W) with the chosen inference strategy (§7.7)."""
    import minseg
    from . import functional as F
    from .crf import dense_crf
    from .inference import sliding_window as slide
    from .inference import tta
    from .registry import input_multiple

    multiple = input_multiple(config["model"])

    def predict_batch(batch):  # NCHW Tensor → logits, reflect-padding the sides to the model's size multiple
        h, w = batch.shape[-2:]
        pad_h, pad_w = -h % multiple, -w % multiple
        padded = F.pad(batch, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else batch
        return model(padded)[..., :h, :w]

    predict_fn = predict_batch
    if sliding_window:
        predict_fn = lambda batch: slide(predict_batch, batch, sliding_window)  # noqa: E731
    tensor = minseg.tensor(image[None], device=device)
    with minseg.no_grad():
        if use_tta:
            probabilities = tta(predict_fn, tensor, flips=("h",)).probabilities[0]
        else:
            result = predict_fn(tensor)
            probabilities = result.probabilities[0] if hasattr(result, "probabilities") else \
                F.softmax(result, 1).data[0]
    if use_crf:
        grey_or_rgb = np.clip(np.asarray(minseg.to_device(image, "cpu")) * 255, 0, 255)
        probabilities = dense_crf(probabilities, grey_or_rgb)
    return minseg.to_device(probabilities, "cpu")


def evaluate(args) -> dict:
    """Score a trained run on a dataset's validation split: mIoU, per-class IoU, Dice, boundary F1."""
    from tqdm.auto import tqdm

    from .metrics import ConfusionMatrix, boundary_f1
    from .registry import build_dataset

    run_dir, config, state = _load_run(args.checkpoint)
    model = _rebuild_model(config, state, args.device)
    dataset = build_dataset(args.dataset or config["dataset"], "val", data_dir=args.data_dir,
                            size=config["image_size"], seed=config["seed"])
    if dataset.num_classes != config["num_classes"]:
        raise ValueError(f"--dataset {args.dataset} has {dataset.num_classes} classes; the model predicts "
                         f"{config['num_classes']}")
    matrix = ConfusionMatrix(config["num_classes"], ignore_index=config["ignore_index"])
    boundary_scores = []
    for index in tqdm(range(len(dataset)), desc="evaluate", unit="image", disable=args.quiet):
        image, mask = dataset[index][:2]
        probabilities = _predict(model, image, config, args.device, args.sliding_window, args.tta, args.crf)
        labels = probabilities.argmax(axis=0)
        matrix.update(labels[None], mask[None])
        boundary_scores.append(boundary_f1(labels[None], mask[None], config["num_classes"],
                                           ignore_index=config["ignore_index"]))
    scores = matrix.compute()
    result = {"miou": float(scores["miou"]), "mean_dice": float(scores["mean_dice"]),
              "pixel_accuracy": float(scores["pixel_accuracy"]), "boundary_f1": float(np.nanmean(boundary_scores)),
              "per_class_iou": {name: float(value) for name, value in zip(config["class_names"], scores["iou"])},
              "images": len(dataset), "sliding_window": args.sliding_window, "tta": args.tta, "crf": args.crf}
    print(f"{'class':<20} {'IoU':>8}")
    for name, value in result["per_class_iou"].items():
        print(f"{name:<20} {value:8.4f}")
    print(f"mIoU {result['miou']:.4f} | mean Dice {result['mean_dice']:.4f} | pixel accuracy "
          f"{result['pixel_accuracy']:.4f} | boundary F1 {result['boundary_f1']:.4f} ({len(dataset)} images)")
    path = args.out or os.path.join(run_dir, "evaluation.json")
    _write_json(path, result)
    print(f"written to {path}")
    return result


def _read_image(path, channels):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def predict(args) -> list:
    """Label PNGs (palette) and overlays for images, with a trained run."""
    from PIL import Image

    run_dir, config, state = _load_run(args.checkpoint)
    model = _rebuild_model(config, state, args.device)
    out = args.out or os.path.join(run_dir, "predictions")
    os.makedirs(out, exist_ok=True)
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(config["palette"])] = np.asarray(config["palette"], np.uint8)
    written = []
    for path in args.images:
        image = _read_image(path, config["in_channels"])
        labels = _predict(model, image, config, args.device, args.sliding_window, args.tta).argmax(axis=0)
        stem = os.path.splitext(os.path.basename(path))[0]
        label_image = Image.fromarray(labels.astype(np.uint8), mode="P")
        label_image.putpalette(palette.ravel().tolist())
        label_path = os.path.join(out, f"{stem}_labels.png")
        label_image.save(label_path)
        rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
        overlay = 0.55 * rgb.transpose(1, 2, 0) * 255 + 0.45 * palette[labels]
        overlay_path = os.path.join(out, f"{stem}_overlay.png")
        Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).save(overlay_path)
        written += [label_path, overlay_path]
        print(f"{path} → {label_path}, {overlay_path}")
    return written


# ------------------------------------------------------------------ demo
def _free_folder(base: str) -> str:
    """``base``, or ``base-1``, ``base-2``… — the first that holds no run yet (a demo never overwrites one)."""
    candidate, number = base, 0
    while os.path.exists(os.path.join(candidate, "checkpoint.npz")):
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def demo(args) -> dict:
    """Train a small U-Net on synthetic touching cells with U-Net's weighted loss (§7.3), evaluate it on
    held-out images and write a figure of image / ground truth / prediction / weight map."""
    from .metrics import ConfusionMatrix
    from .viz import plot_examples

    settings = argparse.Namespace(
        model="unet", dataset="cells", loss="weighted", width=0.25, backbone="resnet18", image_size=96,
        batch_size=8, lr=3e-3, optimizer="adamw", iters=args.steps, epochs=None, seed=args.seed, data_dir=None,
        out=_free_folder(args.out), resume=False, no_augment=False, device=args.device, quiet=args.quiet)
    run = train(settings)
    matrix, rows = ConfusionMatrix(2), []
    for index in range(len(run["val_set"])):
        image, mask, weights = run["val_set"][index]
        labels = _predict(run["model"].eval(), image, run["config"], args.device).argmax(axis=0)
        matrix.update(labels[None], mask[None])
        if index < 3:
            rows.append({"image": image, "ground truth": mask, "prediction": labels, "weight map": weights})
    figure = plot_examples(rows, os.path.join(run["out"], "predictions.png"), "U-Net on held-out synthetic cells")
    scores = matrix.compute()
    foreground = {"foreground_iou": float(scores["iou"][1]), "foreground_dice": float(scores["dice"][1])}
    _write_json(os.path.join(run["out"], "metrics.json"), {**run["metrics"], **foreground})
    print(f"cells: foreground IoU {foreground['foreground_iou']:.3f}, Dice {foreground['foreground_dice']:.3f} on "
          f"{len(run['val_set'])} held-out images; figure {figure}")
    return {**run, **foreground}


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    from .registry import DATASETS, LOSSES, MODELS

    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="minseg", formatter_class=formatter,
                                     description="Semantic segmentation from scratch on NumPy/CuPy (chapter 7).")
    parser.add_argument("--version", action="version", version=f"minseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        sub.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        return sub

    sub = command("demo", "train a small U-Net on synthetic touching cells, evaluate it, draw predictions")
    sub.add_argument("--steps", type=int, default=200, help="training steps (batches of 8 images, 96×96)")
    sub.add_argument("--out", default=os.path.join("runs", "demo"), help="run folder (a new one if it is taken)")
    sub.add_argument("--seed", type=int, default=0)
    sub.set_defaults(run=demo)

    sub = command("train", "train a model of the chapter on a dataset")
    sub.add_argument("--model", choices=MODELS, default="unet")
    sub.add_argument("--dataset", choices=DATASETS, default="cells")
    sub.add_argument("--data-dir", help="folder holding the dataset (else $MINSEG_DATA, else ../shared/data)")
    sub.add_argument("--loss", choices=LOSSES, default="ce")
    length = sub.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, default=5, help="passes over the training set (if --iters is not given)")
    sub.add_argument("--batch-size", type=int, default=8)
    sub.add_argument("--lr", type=float, default=1e-3)
    sub.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    sub.add_argument("--width", type=float, default=0.25, help="channel multiplier (1.0 = the paper's widths)")
    sub.add_argument("--backbone", choices=("resnet18", "resnet34", "resnet50", "resnet101"), default="resnet18",
                     help="encoder of DeepLab v2/v3/v3+")
    sub.add_argument("--image-size", type=int, default=128, help="synthetic image size / training crop size")
    sub.add_argument("--no-augment", action="store_true", help="no flips / elastic deformation / crops")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--out", help="run folder (default runs/MODEL-DATASET)")
    sub.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    sub.set_defaults(run=train)

    for name, function, help_text in (("evaluate", evaluate, "score a trained run on a validation split"),
                                      ("predict", predict, "write label PNGs and overlays for images")):
        sub = command(name, help_text)
        sub.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.npz")
        sub.add_argument("--sliding-window", type=int, metavar="SIZE", help="predict in SIZE×SIZE windows (§7.7.1)")
        sub.add_argument("--tta", action="store_true", help="average with the horizontally flipped image (§7.7.2)")
        sub.add_argument("--out", help="output file (evaluate) or folder (predict)")
        if name == "evaluate":
            sub.add_argument("--dataset", choices=DATASETS, help="default: the dataset the run was trained on")
            sub.add_argument("--data-dir")
            sub.add_argument("--crf", action="store_true", help="refine with the dense CRF (§7.4.4)")
        else:
            sub.add_argument("images", nargs="+", metavar="IMAGE")
        sub.set_defaults(run=function)
    from .data.fetch import add_subcommand  # minseg data fetch NAME | minseg data list
    add_subcommand(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("minseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as error:
        message = " ".join(str(error).split())  # one line, whatever the message's layout
        print(f"minseg {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
