"""The ``minseg`` command: ``demo``, ``train``, ``evaluate``, ``predict`` (and ``data``, from ``data.fetch``).

Every run lives in one folder (``runs.py`` lists its files and the rules that protect a user's files).
Each command checks everything it was given first and writes last, so a refused command changes
nothing. A problem with the user's input ends the command with one line on stderr and exit status 2
(``UserError``); any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .. import __version__
from ..core.backend import reuse_freed_memory
from ..core.errors import UserError
from .runs import (DEFAULT_EPOCHS, MAX_IMAGE_SIZE, MAX_WIDTH, TRAIN_DEFAULTS, WRITTEN_BY, check_replaceable,
                   check_settings, checkpoint_path, load_checkpoint, new_run_problem, read_config, require,
                   resolve_settings, run_length, write_json, write_png)

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
EVALUATION, PREDICTION = "minseg evaluate", "minseg predict"
def _device(device: str) -> str:
    """``--device`` checked by moving a number there (CuPy missing, no such GPU…)."""
    from ..core.backend import canonical_device, to_device

    try:
        to_device(np.zeros(1), device)
        return canonical_device(device)
    except (ValueError, RuntimeError, TypeError) as error:
        raise UserError(f"--device {device}: {error}") from None


def _build_dataset(name, split, **kwargs):
    from .registry import build_dataset

    try:
        return build_dataset(name, split, **kwargs)
    except (FileNotFoundError, ValueError) as error:  # a missing folder or file, a file of the wrong kind
        raise UserError(str(error)) from None


def _rebuild_model(config, state, device):
    from .registry import build_model

    model = build_model(config["model"], config["in_channels"], config["num_classes"], config["width"],
                        config["backbone"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as error:
        raise UserError(f"the checkpoint does not fit a {config['model']} model: {str(error)[:300]}") from None
    return model.to(device).eval()


def _load_run(checkpoint: str):
    """``--checkpoint`` (a run folder or its checkpoint.npz) → (run folder, checked config, model state)."""
    path = checkpoint_path(checkpoint)
    run_dir = os.path.dirname(os.path.abspath(path))
    config = read_config(run_dir)
    return run_dir, config, load_checkpoint(path)["model"]


# ------------------------------------------------------------------ train
def _open_run(out: str):
    """The run in ``out`` to resume → (its checked config, its checkpoint, the steps it has made)."""
    path = os.path.join(out, "checkpoint.npz")
    if not os.path.isfile(path):
        raise UserError(f"--resume: no checkpoint.npz in {out}")
    config, state = read_config(out), load_checkpoint(path, "--resume")
    done = state.get("step")
    if not isinstance(done, (int, np.integer)) or done < 1:
        raise UserError(f"--resume: the checkpoint in {out} has no valid step count (got {done!r:.40})")
    return config, state, int(done)


def train(args) -> dict:
    """Train a model on a dataset; returns the final metrics (also written to metrics.json)."""
    import minseg
    from ..data import DataLoader
    from ..metrics import ConfusionMatrix
    from ..optim import SGD, AdamW, PolyLR
    from .registry import build_loss, build_model
    from .train import NonFiniteLossError, Trainer

    device = _device(args.device)
    args.out = args.out or os.path.join("runs", f"{args.model or TRAIN_DEFAULTS['model']}-"
                                                f"{args.dataset or TRAIN_DEFAULTS['dataset']}")
    config, state, done = _open_run(args.out) if args.resume else (None, None, 0)
    if not args.resume and (problem := new_run_problem(args.out)):
        raise UserError(problem)
    settings = resolve_settings(args, config)
    check_settings(settings, args)
    name, weighted = settings["dataset"], settings["loss"] == "weighted"
    common = dict(data_dir=args.data_dir, size=settings["image_size"], weight_maps=weighted, seed=settings["seed"])
    train_set = _build_dataset(name, "train", augment=settings["augment"], **common)
    val_set = _build_dataset(name, "val", **common)
    batch_size = settings["batch_size"]
    if batch_size > len(train_set):
        raise UserError(f"--batch-size {batch_size} is larger than the training set ({len(train_set)} images of "
                        f"{name}); every batch must be full")
    image = train_set[0][0]
    for key, value in (("in_channels", int(image.shape[0])), ("num_classes", int(train_set.num_classes))):
        if config is not None and config[key] != value:
            raise UserError(f"--resume: config.json in {args.out} has {key} = {config[key]}, but {name} gives {value}")
    minseg.manual_seed(settings["seed"])
    model = build_model(settings["model"], image.shape[0], train_set.num_classes, settings["width"],
                        settings["backbone"])
    train_loader = DataLoader(train_set, batch_size, shuffle=True, drop_last=True, seed=settings["seed"], prefetch=2)
    val_loader = DataLoader(val_set, batch_size if name in ("cells", "shapes", "isbi2012") else 1)
    steps = run_length(args, config, done, len(train_loader))
    lr = settings["lr"]
    optimizer = (AdamW(model.parameters(), lr=lr, weight_decay=1e-4) if settings["optimizer"] == "adamw"
                 else SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4))
    ignore = int(train_set.ignore_index)
    trainer = Trainer(model, build_loss(settings["loss"], ignore, steps), optimizer, train_loader,
                      scheduler=PolyLR(optimizer, total_iters=steps), val_loader=val_loader,
                      metrics=lambda: ConfusionMatrix(int(train_set.num_classes), ignore_index=ignore),
                      max_steps=steps, eval_every=max(1, steps // 4), checkpoint_every=max(1, min(100, steps // 4)),
                      out_dir=args.out, device=device, seed=settings["seed"], log_every=1, progress=not args.quiet)
    if state is not None:
        try:
            trainer.load_state_dict(state)  # the check only: fit(resume=True) reads the checkpoint again
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as error:
            raise UserError(f"--resume: the checkpoint in {args.out} does not fit this run: {str(error)[:300]}") \
                from None
    config = {**settings, "in_channels": int(image.shape[0]), "num_classes": int(train_set.num_classes),
              "ignore_index": ignore, "class_names": list(train_set.class_names),
              "palette": np.asarray(train_set.palette).tolist(), "steps": steps, "minseg": __version__}
    write_json(os.path.join(args.out, "config.json"), config)  # everything was checked: the first write
    started = time.perf_counter()
    try:
        history = trainer.fit(resume=args.resume)
    except NonFiniteLossError as error:
        raise UserError(f"{error} (try a smaller --lr than {lr})") from None
    metrics = {**history["eval"][-1], "train_seconds": round(time.perf_counter() - started, 1)}
    write_json(os.path.join(args.out, "metrics.json"), metrics)
    print(f"trained {settings['model']} on {name} for {steps} steps: val loss {metrics['loss']:.4f}, "
          f"mIoU {metrics['miou']:.4f}, mean Dice {metrics['mean_dice']:.4f}")
    print(f"run folder: {args.out} (config.json, checkpoint.npz, history.json, curves.png, metrics.json)")
    return {"out": args.out, "config": config, "model": model, "val_set": val_set, "metrics": metrics}


# ------------------------------------------------------------------ evaluate / predict
def _predict(model, image, config, device, sliding_window=None, use_tta=False, use_crf=False):
    """Class probabilities (C, H, W) for one image (C_in, H, W) with the chosen inference strategy (§7.7)."""
    import minseg
    from .. import functional as F
    from ..inference.crf import dense_crf
    from ..inference.predict import sliding_window as slide
    from ..inference.predict import tta
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


def _check_window(args) -> None:
    if args.sliding_window is not None:
        require(1 <= args.sliding_window <= MAX_IMAGE_SIZE, "--sliding-window", f"in [1, {MAX_IMAGE_SIZE}]",
                 args.sliding_window)


def evaluate(args) -> dict:
    """Score a trained run on a dataset's validation split: mIoU, per-class IoU, Dice, boundary F1."""
    from tqdm.auto import tqdm

    from ..metrics import ConfusionMatrix, boundary_f1

    device = _device(args.device)
    _check_window(args)
    run_dir, config, state = _load_run(args.checkpoint)
    path = args.out or os.path.join(run_dir, "evaluation.json")
    check_replaceable(path, EVALUATION, "--out", legacy_keys=("miou", "per_class_iou", "sliding_window", "tta", "crf"))
    model = _rebuild_model(config, state, device)
    dataset = _build_dataset(args.dataset or config["dataset"], "val", data_dir=args.data_dir,
                             size=config["image_size"], seed=config["seed"])
    if dataset.num_classes != config["num_classes"]:
        raise UserError(f"--dataset {args.dataset} has {dataset.num_classes} classes; the model predicts "
                        f"{config['num_classes']}")
    if dataset[0][0].shape[0] != config["in_channels"]:
        raise UserError(f"--dataset {args.dataset} has {dataset[0][0].shape[0]}-channel images; the model reads "
                        f"{config['in_channels']}")
    matrix = ConfusionMatrix(config["num_classes"], ignore_index=config["ignore_index"])
    boundary_scores = []
    for index in tqdm(range(len(dataset)), desc="evaluate", unit="image", disable=args.quiet):
        image, mask = dataset[index][:2]
        probabilities = _predict(model, image, config, device, args.sliding_window, args.tta, args.crf)
        labels = probabilities.argmax(axis=0)
        matrix.update(labels[None], mask[None])
        boundary_scores.append(boundary_f1(labels[None], mask[None], config["num_classes"],
                                           ignore_index=config["ignore_index"]))
    scores = matrix.compute()
    result = {"miou": float(scores["miou"]), "mean_dice": float(scores["mean_dice"]),
              "pixel_accuracy": float(scores["pixel_accuracy"]), "boundary_f1": float(np.nanmean(boundary_scores)),
              "per_class_iou": {name: float(value) for name, value in zip(config["class_names"], scores["iou"])},
              "images": len(dataset), "sliding_window": args.sliding_window, "tta": args.tta, "crf": args.crf,
              "checkpoint": os.path.join(run_dir, "checkpoint.npz"), WRITTEN_BY: EVALUATION}
    print(f"{'class':<20} {'IoU':>8}")
    for name, value in result["per_class_iou"].items():
        print(f"{name:<20} {value:8.4f}")
    print(f"mIoU {result['miou']:.4f} | mean Dice {result['mean_dice']:.4f} | pixel accuracy "
          f"{result['pixel_accuracy']:.4f} | boundary F1 {result['boundary_f1']:.4f} ({len(dataset)} images)")
    write_json(path, result)
    print(f"written to {path}")
    return result


MIN_IMAGE_SIDE = 16


def _read_image(path, channels):
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


def predict(args) -> list:
    """Label PNGs (palette) and overlays for images, with a trained run."""
    from PIL import Image

    device = _device(args.device)
    _check_window(args)
    run_dir, config, state = _load_run(args.checkpoint)
    out = args.out or os.path.join(run_dir, "predictions")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file; expected a folder for the predictions")
    images, sources = [], {}
    for path in args.images:  # every input is read, and every output checked, before anything is written
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in sources:
            raise UserError(f"IMAGE {sources[stem]} and {path} would both write {stem}_labels.png; rename one "
                            "or predict them in two runs with different --out")
        sources[stem] = path
        outputs = [os.path.join(out, f"{stem}_{kind}.png") for kind in ("labels", "overlay")]
        for output in outputs:
            check_replaceable(output, PREDICTION, "--out: the prediction")
        images.append((path, _read_image(path, config["in_channels"]), outputs))
    model = _rebuild_model(config, state, device)
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(config["palette"])] = np.asarray(config["palette"], np.uint8)
    written = []
    for path, image, (label_path, overlay_path) in images:
        labels = _predict(model, image, config, device, args.sliding_window, args.tta).argmax(axis=0)
        label_image = Image.fromarray(labels.astype(np.uint8), mode="P")
        label_image.putpalette(palette.ravel().tolist())
        write_png(label_path, label_image, PREDICTION)
        rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
        overlay = 0.55 * rgb.transpose(1, 2, 0) * 255 + 0.45 * palette[labels]
        write_png(overlay_path, Image.fromarray(overlay.clip(0, 255).astype(np.uint8)), PREDICTION)
        written += [label_path, overlay_path]
        print(f"{path} → {label_path}, {overlay_path}")
    return written


# ------------------------------------------------------------------ demo
def _free_folder(base: str) -> str:
    """``base``, or ``base-1``, ``base-2``… — the first a new run may go into (a demo never overwrites)."""
    candidate, number = base, 0
    while new_run_problem(candidate):
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def demo(args) -> dict:
    """Train a small U-Net on synthetic touching cells with U-Net's weighted loss (§7.3), evaluate it on
    held-out images and write a figure of image / ground truth / prediction / weight map."""
    from ..metrics import ConfusionMatrix
    from .viz import plot_examples

    require(isinstance(args.steps, int) and args.steps >= 1, "--steps", "a positive integer", args.steps)
    settings = argparse.Namespace(
        model="unet", dataset="cells", loss="weighted", width=0.25, backbone="resnet18", image_size=96,
        batch_size=8, lr=3e-3, optimizer="adamw", iters=args.steps, epochs=None, seed=args.seed, data_dir=None,
        out=_free_folder(args.out), resume=False, no_augment=False, device=args.device, quiet=args.quiet)
    run = train(settings)
    matrix, rows = ConfusionMatrix(2), []
    for index in range(len(run["val_set"])):
        image, mask, weights = run["val_set"][index]
        labels = _predict(run["model"].eval(), image, run["config"], _device(args.device)).argmax(axis=0)
        matrix.update(labels[None], mask[None])
        if index < 3:
            rows.append({"image": image, "ground truth": mask, "prediction": labels, "weight map": weights})
    figure = plot_examples(rows, os.path.join(run["out"], "predictions.png"), "U-Net on held-out synthetic cells")
    scores = matrix.compute()
    foreground = {"foreground_iou": float(scores["iou"][1]), "foreground_dice": float(scores["dice"][1])}
    write_json(os.path.join(run["out"], "metrics.json"), {**run["metrics"], **foreground})
    print(f"cells: foreground IoU {foreground['foreground_iou']:.3f}, Dice {foreground['foreground_dice']:.3f} on "
          f"{len(run['val_set'])} held-out images; figure {figure}")
    return {**run, **foreground}


# ------------------------------------------------------------------ command line
class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except ``None`` (options whose default the help text states, or that have none)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _add_train_parser(commands, command) -> None:
    from .registry import DATASETS, LOSSES, MODELS
    from .runs import BACKBONES, OPTIMIZERS

    sub = command("train", "train a model of the chapter on a dataset")
    resumed = "; on --resume, the run's"

    def setting(flag, help_text, **kwargs):
        key = flag[2:].replace("-", "_")
        sub.add_argument(flag, help=f"{help_text} (default: {TRAIN_DEFAULTS[key]}{resumed})", **kwargs)

    setting("--model", "architecture", choices=MODELS)
    setting("--dataset", "training data", choices=DATASETS)
    sub.add_argument("--data-dir", help="folder holding the dataset (else $MINSEG_DATA, else ../shared/data)")
    setting("--loss", "training loss", choices=LOSSES)
    length = sub.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, metavar="N",
                        help=f"optimizer steps in all (default: {DEFAULT_EPOCHS} epochs{resumed} length). With "
                             "--resume, a larger N extends the run, and its poly learning-rate schedule is "
                             "stretched to N steps, as if N had been planned from the start")
    length.add_argument("--epochs", type=int, metavar="E",
                        help=f"passes over the training set instead of --iters (default: {DEFAULT_EPOCHS}); with "
                             "--resume counted from the run's start, like --iters")
    setting("--batch-size", "images per optimizer step", type=int)
    setting("--lr", "peak learning rate of the poly schedule", type=float)
    setting("--optimizer", "optimizer", choices=OPTIMIZERS)
    setting("--width", f"channel multiplier in (0, {MAX_WIDTH}]; 1.0 = the paper's widths", type=float)
    setting("--backbone", "encoder of DeepLab v2/v3/v3+", choices=BACKBONES)
    setting("--image-size", "synthetic image size / training crop size", type=int)
    sub.add_argument("--no-augment", action="store_true", default=None,
                     help="no flips / elastic deformation / crops (default: augment; on --resume, the run's)")
    setting("--seed", "seed of the weights, the data order and the augmentation", type=int)
    sub.add_argument("--out", help="run folder: a new or empty one (default: runs/MODEL-DATASET)")
    sub.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its checkpoint, with the settings in its config.json: "
                          "an option that would change them is refused, except --iters/--epochs, which extend it")
    sub.set_defaults(run=train)


def build_parser() -> argparse.ArgumentParser:
    from .registry import DATASETS

    parser = argparse.ArgumentParser(prog="minseg", formatter_class=_Formatter,
                                     description="Semantic segmentation from scratch on NumPy/CuPy (chapter 7).")
    parser.add_argument("--version", action="version", version=f"minseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
        sub.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        return sub

    sub = command("demo", "train a small U-Net on synthetic touching cells, evaluate it, draw predictions")
    sub.add_argument("--steps", type=int, default=200, help="training steps (batches of 8 images, 96×96)")
    sub.add_argument("--out", default=os.path.join("runs", "demo"), help="run folder (a new one if it is taken)")
    sub.add_argument("--seed", type=int, default=0)
    sub.set_defaults(run=demo)

    _add_train_parser(commands, command)

    for name, function, help_text in (("evaluate", evaluate, "score a trained run on a validation split"),
                                      ("predict", predict, "write label PNGs and overlays for images")):
        sub = command(name, help_text)
        sub.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.npz")
        sub.add_argument("--sliding-window", type=int, metavar="SIZE", help="predict in SIZE×SIZE windows (§7.7.1)")
        sub.add_argument("--tta", action="store_true", help="average with the horizontally flipped image (§7.7.2)")
        if name == "evaluate":
            sub.add_argument("--out", help="output JSON: new, or an earlier evaluation (default: "
                                           "RUN/evaluation.json)")
            sub.add_argument("--dataset", choices=DATASETS, help="default: the dataset the run was trained on")
            sub.add_argument("--data-dir")
            sub.add_argument("--crf", action="store_true", help="refine with the dense CRF (§7.4.4)")
        else:
            sub.add_argument("--out", help="output folder (default: RUN/predictions)")
            sub.add_argument("images", nargs="+", metavar="IMAGE")
        sub.set_defaults(run=function)
    from ..data.fetch import add_subcommand  # minseg data fetch NAME | minseg data list
    add_subcommand(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # a training step makes the same big arrays again and again; keep their pages
    try:
        args.run(args)
    except KeyboardInterrupt:
        print("minseg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as error:
        message = " ".join(str(error).split())  # one line, whatever the message's layout
        print(f"minseg {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
