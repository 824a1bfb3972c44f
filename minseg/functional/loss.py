"""Classification losses applied at every pixel: ``nll_loss`` and ``cross_entropy``, as in PyTorch.

Input is (N, C) with targets (N,), or (N, C, d1, …) with targets (N, d1, …) — for segmentation
(N, C, H, W) logits against an (N, H, W) label map. Each pixel n with target class t contributes
``−w_t · log p_{n,t}``. ``weight`` (one number per class) counters class imbalance; pixels labelled
``ignore_index`` count neither in the loss nor in its normaliser.
"""

from __future__ import annotations

import numpy as np

from ..core.autograd import Function, raw
from ..core.backend import get_array_module
from .elementwise import log_softmax
from .reduction import sum as sum_
from .shape import reshape

_REDUCTIONS = ("mean", "sum", "none")


def _along_classes(vector, ndim):
    """A (C,) vector reshaped to broadcast along the class axis 1 of an (N, C, …) array."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


class NLLLoss(Function):
    """Negative log-likelihood with class weights, an ignored label and label smoothing.

    For pixel n with target t (v_n = 0 where t is ignored, else 1), ε = label_smoothing and C classes:
        loss_n = v_n · ((1 − ε) · w_t · (−log p_{n,t}) + (ε / C) · Σ_c w_c · (−log p_{n,c}))
    "sum" adds the loss_n; "mean" divides that sum by Σ_n v_n · w_{t_n}, the total weight of the
    counted pixels (ε's term is normalised by the same total, as in PyTorch). When that total is 0
    (every pixel ignored) the mean is 0/0 = nan, as in PyTorch, yet the gradient is 0.
    The gradient with respect to log p_{n,c} is minus its coefficient above, −v_n · ((1 − ε) · w_t · [c = t]
    + (ε / C) · w_c), times the upstream gradient (divided by the total for "mean").
    """

    def forward(self, input, target, weight, *, ignore_index, reduction, label_smoothing):
        xp = get_array_module(input)
        counted = target != ignore_index
        safe_target = xp.where(counted, target, 0)  # any valid class: ignored pixels are zeroed by `counted`
        class_weight = xp.ones(input.shape[1], dtype=input.dtype) if weight is None else weight.astype(input.dtype)
        pixel_weight = class_weight[safe_target] * counted  # w_t, 0 where ignored
        picked = xp.take_along_axis(input, xp.expand_dims(safe_target, 1), axis=1).squeeze(1)  # log p_{n,t}
        losses = -(1 - label_smoothing) * pixel_weight * picked
        if label_smoothing:
            spread = (input * _along_classes(class_weight, input.ndim)).sum(axis=1)  # Σ_c w_c log p_{n,c}
            losses = losses - (label_smoothing / input.shape[1]) * counted * spread
        self.save_for_backward(safe_target, pixel_weight, class_weight, counted if label_smoothing else None)
        self.input_shape, self.reduction, self.label_smoothing = input.shape, reduction, label_smoothing
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        weight_total = pixel_weight.sum()
        has_weight = weight_total != 0
        self.normalizer = xp.where(has_weight, weight_total, 1)  # 1 avoids 0/0 (every pixel weight is 0 then)
        return xp.where(has_weight, losses.sum() / self.normalizer, xp.nan).astype(input.dtype)

    def backward(self, grad):
        safe_target, pixel_weight, class_weight, counted = self.saved
        xp = get_array_module(grad)
        ndim = len(self.input_shape)
        if self.reduction == "mean":
            grad = grad / self.normalizer
        per_pixel = xp.expand_dims(xp.broadcast_to(grad, safe_target.shape), 1)  # (N, 1, …)
        is_target = _along_classes(xp.arange(self.input_shape[1]), ndim) == xp.expand_dims(safe_target, 1)
        grad_input = -(1 - self.label_smoothing) * per_pixel * xp.expand_dims(pixel_weight, 1) * is_target
        if self.label_smoothing:
            smoothing = (self.label_smoothing / self.input_shape[1]) * _along_classes(class_weight, ndim)
            grad_input = grad_input - per_pixel * xp.expand_dims(counted, 1) * smoothing
        return grad_input, None, None



def _validate(name, input, target, weight, ignore_index, reduction, label_smoothing):
    """Check the arguments as PyTorch does, with ValueErrors that say what is wrong; return raw target/weight."""
    target, weight = raw(target), raw(weight)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    target_dtype = getattr(target, "dtype", None)
    if target_dtype is None or not np.issubdtype(target_dtype, np.integer):
        soft = f" (or class probabilities of the input's shape {tuple(input.shape)})" if name == "cross_entropy" else ""
        raise ValueError(f"{name}: target must hold integer class indices{soft}; got "
                         f"{'dtype ' + str(target_dtype) if target_dtype is not None else type(target).__name__}")
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class axis, (C,) or (N, C, …); got a 0-d tensor")
    classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: target shape must be the input's shape without the class axis, i.e. "
                         f"{expected} for input {input.shape}; got {tuple(target.shape)}")
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"{name}: weight must have one entry per class, shape ({classes},); got {tuple(weight.shape)}")
    out_of_range = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bool(out_of_range.any()):
        bad = int(target[out_of_range].ravel()[0])
        raise ValueError(f"{name}: target value {bad} is not a class index in [0, {classes}) for C = {classes} "
                         f"classes, nor ignore_index={ignore_index}")
    return target, weight


def _nll(log_probs, target, weight, ignore_index, reduction, label_smoothing):
    if log_probs.ndim == 1:  # one unbatched sample: (C,) against a 0-d target
        loss = _nll(reshape(log_probs, 1, -1), target.reshape(1), weight, ignore_index, reduction, label_smoothing)
        return reshape(loss, ()) if reduction == "none" else loss
    return NLLLoss.apply(log_probs, target, weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C, …) at integer ``target`` (N, …).

    loss_n = −w_{t_n} · input[n, t_n] for pixels whose target is not ``ignore_index`` (0 for the others);
    "mean" returns Σ_n loss_n / Σ_n w_{t_n} over the counted pixels, "sum" the plain sum, "none" the loss
    map. Weighting classes is the usual answer to a rare foreground (§7.3.5); ``ignore_index=255`` skips
    the void/boundary label of PASCAL VOC and Cityscapes (§7.5.1). See ``NLLLoss`` for the gradient.
    """
    target, weight = _validate("nll_loss", input, target, weight, ignore_index, reduction, 0.0)
    return _nll(input, target, weight, ignore_index, reduction, 0.0)


def _probability_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    """Cross-entropy against class probabilities q of the input's shape, as PyTorch: with q' = (1 − ε) q + ε/C,
    pixel n costs −Σ_c w_c q'_{n,c} log p_{n,c}; "mean" divides by the number of pixels (not by weights).
    Built from differentiable ops, so a target that requires grad gets its gradient too."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    if not np.issubdtype(target.dtype, np.floating):
        raise ValueError(f"cross_entropy: a target of the input's shape {tuple(input.shape)} holds class "
                         f"probabilities and must be floating point; got dtype {target.dtype}")
    if ignore_index >= 0:
        raise ValueError(f"cross_entropy: ignore_index={ignore_index} needs class-index targets; a target of "
                         "class probabilities has no label to ignore")
    axis = 0 if input.ndim == 1 else 1
    classes = input.shape[axis]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"cross_entropy: weight must have one entry per class, shape ({classes},); got "
                         f"{tuple(weight.shape)}")
    mixed = target * (1 - label_smoothing) + label_smoothing / classes if label_smoothing else target
    terms = log_softmax(input, axis) * mixed
    if weight is not None:
        terms = terms * reshape(weight, (-1,) + (1,) * (input.ndim - axis - 1))
    losses = -sum_(terms, axis)
    if reduction == "none":
        return losses
    pixels = int(np.prod(losses.shape))
    return sum_(losses) if reduction == "sum" else sum_(losses) / (pixels or np.nan)  # no pixels: nan, as torch


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """Softmax cross-entropy of logits ``input`` (N, C, …) against integer ``target`` (N, …): the per-pixel
    loss an FCN is trained with (§7.2.3), computed as ``nll_loss(log_softmax(input, 1), target)``.

    With p = softmax over the classes, pixel n costs −w_t log p_{n,t}; ``weight`` (§7.3.5),
    ``ignore_index`` (255 for void pixels, §7.5.1) and ``reduction`` behave as in ``nll_loss``.
    ``label_smoothing`` ε mixes the one-hot target with the uniform distribution: the target class gets
    weight 1 − ε + ε/C and every other class ε/C. A float ``target`` of the input's own shape holds class
    probabilities instead (soft labels, as in PyTorch; see ``_probability_cross_entropy``).
    """
    if tuple(getattr(target, "shape", ())) == tuple(input.shape) and input.ndim > 0:
        return _probability_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    target, weight = _validate("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing)
    log_probs = log_softmax(input, 0 if input.ndim == 1 else 1)
    return _nll(log_probs, target, weight, ignore_index, reduction, label_smoothing)
