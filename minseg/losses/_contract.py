"""The contract every loss in ``minseg.losses`` follows, in one place.

* ``logits`` are (N, C, *spatial) raw scores. ``mode="multiclass"`` turns them into probabilities with a
  softmax over the C classes; ``mode="binary"`` needs C = 1 and uses the sigmoid of that channel as the
  foreground probability.
* ``target`` is an integer label map (N, *spatial): a class in [0, C) (in {0, 1} in binary mode) or
  ``ignore_index``. Any other value is a ValueError that names it.
* A pixel labelled ``ignore_index`` is removed from every sum, numerator and denominator alike; its
  logits get zero gradient. A batch with no counted pixel gives 0 with zero gradient, silently.
* ``reduction``: "none" keeps one value per pixel (per-pixel losses) or per image (losses over sets
  of pixels, with ``per_image=True``); "sum" adds them; "mean" averages over counted pixels / images.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..core.autograd import Tensor, raw
from ..core.backend import get_array_module
from ..nn import Module

REDUCTIONS = ("mean", "sum", "none")
MODES = ("multiclass", "binary")



def check_options(name: str, reduction: str, mode: str = "multiclass") -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}; got {reduction!r}")
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {MODES}; got {mode!r}")


def check_target(name: str, logits, target, ignore_index: int, mode: str = "multiclass"):
    """Validate (N, C, *S) logits against an (N, *S) integer target; return the raw target and its valid mask."""
    target = raw(target)
    dtype = getattr(target, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name}: target must be an integer label map; got "
                         f"{'dtype ' + str(dtype) if dtype is not None else type(target).__name__}")
    if logits.ndim < 2:
        raise ValueError(f"{name}: logits must be (N, C, *spatial); got shape {logits.shape}")
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: target must be (N, *spatial) = {expected} for logits {logits.shape}; "
                         f"got {tuple(target.shape)}")
    classes = logits.shape[1]
    if mode == "binary" and classes != 1:
        raise ValueError(f"{name}: binary mode takes one logit channel, (N, 1, *spatial); got {logits.shape}")
    valid = target != ignore_index
    top = 2 if mode == "binary" else classes
    wrong = valid & ((target < 0) | (target >= top))
    if bool(wrong.any()):
        bad = int(target[wrong].ravel()[0])
        allowed = "0 or 1 (binary mode)" if mode == "binary" else f"a class in [0, {classes})"
        raise ValueError(f"{name}: target value {bad} is neither {allowed} nor ignore_index={ignore_index}")
    return target, valid


def probabilities(logits, mode: str):
    """Softmax over the classes (multiclass) or the sigmoid foreground probability (binary), (N, K, *S)."""
    return F.softmax(logits, 1) if mode == "multiclass" else F.sigmoid(logits)


def two_class_logits(logits):
    """(N, 1, *S) binary logits x → (N, 2, *S) logits [0, x], whose softmax is [1 − σ(x), σ(x)]: the binary
    losses reuse the softmax ones, with log σ computed stably by log_softmax."""
    xp = get_array_module(logits)
    return F.cat([Tensor(xp.zeros_like(raw(logits))), logits], 1)


def one_hot(target, valid, classes: int, mode: str, dtype):
    """(N, K, *S) indicator of the target class, 0 at ignored pixels; binary mode: K = 1, the foreground."""
    xp = get_array_module(target)
    if mode == "binary":
        return ((target == 1) & valid)[:, None].astype(dtype)
    labels = xp.arange(classes).reshape((1, classes) + (1,) * (target.ndim - 1))
    return ((target[:, None] == labels) & valid[:, None]).astype(dtype)


def class_vector(name: str, values, classes: int, like):
    """Per-class numbers (list, array or Tensor) as a (classes,) array on ``like``'s device and dtype."""
    xp = get_array_module(like)
    vector = xp.asarray(raw(values), dtype=like.dtype).reshape(-1)
    if vector.shape != (classes,):
        raise ValueError(f"{name}: expected one value per class, shape ({classes},); got shape {vector.shape}")
    return vector


def reduce_pixels(loss_map, valid, reduction: str):
    """Reduce an (N, *S) loss map that is already 0 at ignored pixels: "mean" divides by the counted pixels."""
    if reduction == "none":
        return loss_map
    total = loss_map.sum()
    if reduction == "sum":
        return total
    return total / max(int(valid.sum()), 1)  # all ignored: 0 / 1, and every gradient is 0


def reduce_images(losses, counted, reduction: str, per_image: bool):
    """Reduce per-image losses (N,) that are 0 for images without counted pixels (``counted`` False).

    Without ``per_image`` the batch was treated as one image: the single value comes back as a 0-d tensor.
    """
    if not per_image:
        return losses.reshape(())
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / max(int(counted.sum()), 1)


class FunctionalLoss(Module):
    """Base of the module wrappers: stores the loss function's options; ``forward(logits, target, …)``
    calls the function with them (extra arguments, such as a pixel weight map, are passed through)."""

    def __init__(self, function, **options):
        super().__init__()
        self.function, self.options = function, options

    def forward(self, logits, target, *args, **kwargs):
        return self.function(logits, target, *args, **kwargs, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
