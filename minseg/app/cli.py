"""The ``minseg`` command: ``demo``, ``train``, ``evaluate``, ``predict`` (and ``data``, from ``data.fetch``).

This module parses the options and prints; what each command does is in ``commands.py``, and every run
lives in one folder (``runs.py`` lists its files and the rules that protect a user's files).
Each command checks everything it was given first and writes last, so a refused command changes
nothing. A problem with the user's input ends the command with one line on stderr and exit status 2
(``UserError``); any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..core.backend import reuse_freed_memory
from ..core.errors import UserError
from . import commands
from .runs import DEFAULT_EPOCHS, MAX_IMAGE_SIZE, MAX_WIDTH, TRAIN_DEFAULTS, require, resolve_settings

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def _print_training(run) -> None:
    config, metrics = run["config"], run["metrics"]
    print(f"trained {config['model']} on {config['dataset']} for {run['steps']} steps: val loss {metrics['loss']:.4f}, "
          f"mIoU {metrics['miou']:.4f}, mean Dice {metrics['mean_dice']:.4f}")
    print(f"run folder: {run['out']} (config.json, checkpoint.npz, history.json, curves.png, metrics.json)")


def train(args) -> dict:
    """``minseg train``: the options (or, on --resume, the run's config.json) → ``commands.train_run``."""
    device = commands.check_device(args.device)
    out = args.out or os.path.join("runs", f"{args.model or TRAIN_DEFAULTS['model']}-"
                                           f"{args.dataset or TRAIN_DEFAULTS['dataset']}")
    resumed = commands.open_run(out) if args.resume else None
    given = {key: getattr(args, key) for key in TRAIN_DEFAULTS if key != "augment"}
    given["augment"] = False if args.no_augment else None
    settings = resolve_settings(given, resumed and resumed[0], out)
    run = commands.train_run(settings, out, iters=args.iters, epochs=args.epochs, resumed=resumed,
                             data_dir=args.data_dir, device=device, quiet=args.quiet)
    _print_training(run)
    return run


def _check_window(args) -> None:
    if args.sliding_window is not None:
        require(1 <= args.sliding_window <= MAX_IMAGE_SIZE, "--sliding-window", f"in [1, {MAX_IMAGE_SIZE}]",
                args.sliding_window)


def evaluate(args) -> dict:
    """``minseg evaluate``: mIoU, per-class IoU, Dice, boundary F1 of a trained run (``commands.evaluate_run``)."""
    device = commands.check_device(args.device)
    _check_window(args)
    result, path = commands.evaluate_run(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir, out=args.out,
                                         window=args.sliding_window, use_tta=args.tta, use_crf=args.crf,
                                         device=device, quiet=args.quiet)
    print(f"{'class':<20} {'IoU':>8}")
    for name, value in result["per_class_iou"].items():
        print(f"{name:<20} {value:8.4f}")
    print(f"mIoU {result['miou']:.4f} | mean Dice {result['mean_dice']:.4f} | pixel accuracy "
          f"{result['pixel_accuracy']:.4f} | boundary F1 {result['boundary_f1']:.4f} ({result['images']} images)")
    print(f"written to {path}")
    return result


def predict(args) -> list:
    """``minseg predict``: label PNGs and overlays for images, with a trained run (``commands.predict_files``)."""
    device = commands.check_device(args.device)
    _check_window(args)
    written = []
    for path, label_path, overlay_path in commands.predict_files(args.checkpoint, args.images, out=args.out,
                                                                 window=args.sliding_window, use_tta=args.tta,
                                                                 device=device):
        written += [label_path, overlay_path]
        print(f"{path} → {label_path}, {overlay_path}")
    return written


def demo(args) -> dict:
    """``minseg demo``: a small U-Net on synthetic touching cells, scored and drawn (``commands.demo_run``)."""
    run = commands.demo_run(args.steps, args.out, seed=args.seed, device=commands.check_device(args.device),
                            quiet=args.quiet)
    _print_training(run)
    print(f"cells: foreground IoU {run['foreground_iou']:.3f}, Dice {run['foreground_dice']:.3f} on "
          f"{len(run['val_set'])} held-out images; figure {run['figure']}")
    return run


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
