"""The files of a run folder, and the rules that keep a user's files safe.

A run folder holds ``config.json`` (what was trained, so evaluate/predict can rebuild the model),
``checkpoint.npz``, ``history.json``, ``curves.png``, ``metrics.json``, figures, ``evaluation.json``
and ``predictions/``. The command line only ever

* starts a run in a folder that does not exist yet, is empty, or holds nothing but the ``config.json``
  of one of its own runs that never reached a checkpoint;
* replaces a file it wrote itself: JSON carrying its ``written_by`` mark, PNGs carrying it in their
  text chunk, or the files of a run it continues;
* writes every file atomically (a temporary file renamed over the target), so a failed or killed
  command leaves the previous version.

Everything read back (config.json, checkpoint.npz) is checked before it is used, and every problem is
a ``UserError`` naming the file, what was expected and what was found. The settings of ``minseg train``
come from its options, else (on ``--resume``) from the run's config.json, else from ``TRAIN_DEFAULTS``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from numbers import Integral, Real

from ..core.errors import UserError
from ..core.serialization import atomic_write

RUN_FILES = ("config.json", "checkpoint.npz", "history.json", "curves.png", "metrics.json", "predictions.png")
WRITTEN_BY = "written_by"
EVALUATION, PREDICTION = "minseg evaluate", "minseg predict"  # the marks of the files those commands write
MAX_WIDTH, MAX_IMAGE_SIZE, MAX_CLASSES = 4.0, 4096, 1024
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
OPTIMIZERS = ("adamw", "sgd")


# ------------------------------------------------------------------ writing
def write_json(path, data, indent: int = 2) -> None:
    """Write ``data`` as indented JSON, atomically (``atomic_write``)."""
    text = json.dumps(data, indent=indent).encode()
    atomic_write(path, lambda file: file.write(text))


def write_png(path, image, mark: str) -> None:
    """Save a PIL image as PNG, atomically, with ``mark`` in its "Software" text chunk (see ``is_ours``)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", mark)
    atomic_write(path, lambda file: image.save(file, format="PNG", pnginfo=info))


def is_ours(path, mark: str, legacy_keys=()) -> bool:
    """Whether the file at ``path`` carries ``mark``: a JSON object's ``written_by``, a PNG's "Software";
    or, for files of earlier versions that had no mark, a JSON object with all of ``legacy_keys``."""
    try:
        if str(path).endswith(".png"):
            from PIL import Image

            with Image.open(path) as image:
                return image.info.get("Software") == mark
        with open(path) as file:
            data = json.load(file)
        return isinstance(data, dict) and (data.get(WRITTEN_BY) == mark or bool(legacy_keys) and
                                           all(key in data for key in legacy_keys))
    except (OSError, ValueError):
        return False


def check_replaceable(path, mark: str, option: str, legacy_keys=()) -> None:
    """Refuse to write ``path`` unless it is new or a file of ours (``is_ours``), which is then replaced."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a folder; expected a file path")
    if not os.path.exists(path) or is_ours(path, mark, legacy_keys):
        return
    name = os.path.basename(path)
    what = f"a run's own {name}" if name in RUN_FILES else "a file minseg did not write"
    raise UserError(f"{option} {path} exists and is {what}; minseg never replaces it — choose another path")


# ------------------------------------------------------------------ run folders
def _our_config(path) -> bool:
    try:
        with open(path) as file:
            return "minseg" in json.load(file)
    except (OSError, ValueError, TypeError):
        return False


def new_run_problem(out: str):
    """Why a new run may not go into ``out``, or None: it may if the folder does not exist, is empty, or
    holds nothing but the config.json of one of our runs that never reached a checkpoint."""
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out} is a file; expected a folder for the run (a new or empty one)"
    if not os.path.isdir(out):
        return None
    if os.path.exists(os.path.join(out, "checkpoint.npz")):
        return f"--out {out} already holds a run; pass --resume to continue it, or a new --out"
    leftovers = {"config.json"} if _our_config(os.path.join(out, "config.json")) else set()
    others = sorted(name for name in os.listdir(out) if name not in leftovers and ".tmp-" not in name)
    if not others:
        return None
    shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return (f"--out {out} holds files that are not a minseg run ({shown}); minseg writes a run only into a new "
            "or empty folder — choose another --out")


def checkpoint_path(checkpoint: str, option: str = "--checkpoint") -> str:
    """``checkpoint`` is a run folder or its checkpoint.npz → the path of the .npz file."""
    path = os.path.join(checkpoint, "checkpoint.npz") if os.path.isdir(checkpoint) else checkpoint
    if not os.path.isfile(path):
        raise UserError(f"{option} {checkpoint}: no checkpoint.npz there")
    return path


def load_checkpoint(path: str, option: str = "--checkpoint") -> dict:
    """``minseg.load(path)`` with its problems as a UserError naming the option."""
    from ..core.serialization import load

    try:
        state = load(path)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"{option} {path}: {str(error).removeprefix('load: ')}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UserError(f"{option} {path}: a minseg checkpoint, but not of a training run (no model state)")
    return state


def read_config(run_dir: str) -> dict:
    """The run's config.json, checked field by field (a hand-edited file gets a message, not a crash)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{run_dir}: no config.json beside the checkpoint (was it written by minseg train?)")
    try:
        with open(path) as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} must hold a JSON object; got {type(config).__name__}")
    _check_config(config, path)
    return config


def _integer(low, high=None):
    return lambda v: isinstance(v, Integral) and not isinstance(v, bool) and low <= v and (high is None or v <= high)


def _number(low, high):
    return lambda v: isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and low < v <= high


def _check_config(config: dict, path: str) -> None:
    from .registry import DATASETS, LOSSES, MODELS

    classes = config.get("num_classes")
    fields = {
        "model": (lambda v: v in MODELS, f"one of {', '.join(MODELS)}"),
        "dataset": (lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"),
        "loss": (lambda v: v in LOSSES, f"one of {', '.join(LOSSES)}"),
        "backbone": (lambda v: v in BACKBONES, f"one of {', '.join(BACKBONES)}"),
        "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
        "width": (_number(0, MAX_WIDTH), f"a number in (0, {MAX_WIDTH}]"),
        "lr": (_number(0, math.inf), "a positive finite number"),
        "image_size": (_integer(8, MAX_IMAGE_SIZE), f"an integer in [8, {MAX_IMAGE_SIZE}]"),
        "in_channels": (_integer(1, 4), "an integer in [1, 4]"),
        "num_classes": (_integer(1, MAX_CLASSES), f"an integer in [1, {MAX_CLASSES}]"),
        "ignore_index": (_integer(-1000, 1000), "an integer"),
        "batch_size": (_integer(1), "a positive integer"),
        "steps": (_integer(1), "a positive integer"),
        "seed": (_integer(0), "a non-negative integer"),
        "class_names": (lambda v: isinstance(v, list) and len(v) == classes and all(isinstance(n, str) for n in v),
                        f"a list of {classes} names (one per class)"),
        "palette": (lambda v: isinstance(v, list) and len(v) >= classes and all(
            isinstance(c, list) and len(c) == 3 and all(_integer(0, 255)(x) for x in c) for c in v),
            f"a list of at least {classes} [r, g, b] colours (0–255)"),
    }
    for name, (valid, expected) in fields.items():
        if name not in config:
            raise UserError(f"{path}: no {name!r} entry (was it written by minseg train?)")
        if not valid(config[name]):
            raise UserError(f"{path}: {name} must be {expected}; got {config[name]!r:.80}")
    if "augment" in config and not isinstance(config["augment"], bool):
        raise UserError(f"{path}: augment must be true or false; got {config['augment']!r:.80}")


# ------------------------------------------------------------------ the settings of a run
@dataclass(frozen=True)
class RunConfig:
    """What a training run is: the settings ``config.json`` keeps (with the data's facts) so that a run can
    be resumed, evaluated and rebuilt. ``minseg train`` resolves one from its options (``resolve_settings``);
    ``minseg demo`` writes its own."""

    model: str = "unet"
    dataset: str = "cells"
    loss: str = "ce"
    batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "adamw"
    width: float = 0.25
    backbone: str = "resnet18"
    image_size: int = 128
    seed: int = 0
    augment: bool = True


TRAIN_DEFAULTS = asdict(RunConfig())
DEFAULT_EPOCHS = 5


def flag(key: str) -> str:
    """The ``minseg train`` option of a setting: "batch_size" → "--batch-size"."""
    return "--no-augment" if key == "augment" else "--" + key.replace("_", "-")


def require(ok: bool, option: str, expected: str, value) -> None:
    """A UserError "OPTION must be EXPECTED; got VALUE" unless ``ok``."""
    if not ok:
        raise UserError(f"{option} must be {expected}; got {value!r}")


def resolve_settings(given: dict, config, out: str) -> RunConfig:
    """The run's settings: the ``given`` options (None where absent), else (on --resume) the run's
    ``config`` (its config.json), else the defaults. Resuming with an option that differs from the run's
    config is refused, naming the option."""
    if config is None:
        return RunConfig(**{key: value for key, value in given.items() if value is not None})
    for key, value in given.items():
        if value is not None and key in config and value != config[key]:
            shown = flag(key) if key == "augment" else f"{flag(key)} {value}"
            raise UserError(f"{shown} differs from the run's {key} = {config[key]!r} (config.json in {out}); "
                            "a resumed run keeps its settings: only --iters/--epochs may change, to extend it")
    return RunConfig(**{key: config.get(key, TRAIN_DEFAULTS[key]) for key in TRAIN_DEFAULTS})


def check_settings(settings: RunConfig, iters=None, epochs=None) -> None:
    """Every setting and the run length in range, before anything is built or written."""
    from .registry import input_multiple

    for option, value in (("--iters", iters), ("--epochs", epochs), ("--batch-size", settings.batch_size)):
        if value is not None:
            require(value >= 1, option, "a positive integer", value)
    lr, width, size = settings.lr, settings.width, settings.image_size
    require(math.isfinite(lr) and lr > 0, "--lr", "a positive finite number", lr)
    require(math.isfinite(width) and 0 < width <= MAX_WIDTH, "--width", f"in (0, {MAX_WIDTH}]", width)
    require(8 <= size <= MAX_IMAGE_SIZE, "--image-size", f"in [8, {MAX_IMAGE_SIZE}]", size)
    require(settings.seed >= 0, "--seed", "a non-negative integer", settings.seed)
    multiple = input_multiple(settings.model)
    if size % multiple:
        raise UserError(f"--image-size {size} must be a multiple of {multiple} for {settings.model}")


def run_length(iters, epochs, config, done, steps_per_epoch, out) -> int:
    """Total optimizer steps: ``iters``, or ``epochs`` × batches per epoch, or (resuming the run in ``out``,
    whose ``config`` is given and which has ``done`` steps) the run's, or 5 epochs."""
    if iters is not None:
        steps, option = iters, f"--iters {iters}"
    elif epochs is not None:
        steps, option = epochs * steps_per_epoch, f"--epochs {epochs} ({epochs * steps_per_epoch} steps)"
    elif config is not None:
        steps, option = config["steps"], None
    else:
        return DEFAULT_EPOCHS * steps_per_epoch
    if config is not None and steps < done:
        raise UserError(f"{option} is fewer than the {done} steps the run in {out} has done")
    if config is not None and steps == done:
        raise UserError(f"the run in {out} has done all its {done} steps; pass --iters N with N > {done} to "
                        "extend it")
    return steps
