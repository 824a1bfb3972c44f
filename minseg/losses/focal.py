"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017): cross-entropy scaled by
(1 − p_t)^γ so that well-classified pixels (p_t → 1) fade out and the hard ones dominate; an
imbalance-aware alternative to the class weighting of §7.3.5."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..core.autograd import Tensor
from ..core.backend import get_array_module
from ._contract import FunctionalLoss, check_options, check_target, class_vector, one_hot, reduce_pixels


def _focal_map(log_probs, truth, gamma: float, axis: int):
    """−(1 − p_t)^γ · log p_t, with log p_t = Σ along ``axis`` of log p times the one-hot ``truth``."""
    log_pt = (log_probs * truth).sum(axis)
    if gamma == 0:  # plain cross-entropy; also avoids 0^(γ−1) in the gradient of the power
        return -log_pt
    return -((1 - F.exp(log_pt)) ** gamma) * log_pt


def sigmoid_focal_loss(logits, target, alpha: float | None = 0.25, gamma: float = 2.0, ignore_index: int = -100,
                       reduction: str = "mean"):
    """Sigmoid focal loss as in RetinaNet and ``torchvision.ops.sigmoid_focal_loss``, per pixel (§7.3.5).

        FL = −α_t (1 − p_t)^γ log p_t,   p = σ(x),
        p_t = p if g = 1 else 1 − p,     α_t = α if g = 1 else 1 − α

    ``logits`` (N, C, *S): with C = 1 the labels are {0, 1} (binary); with C > 1 each channel is a
    one-vs-all binary problem against the one-hot of the (N, *S) class labels, as in RetinaNet.
    A pixel's loss is the sum over its channels; "mean" averages over counted pixels (torchvision's mean
    over elements, for C = 1). ``alpha=None`` (or negative, as in torchvision) disables α weighting;
    defaults α = 0.25, γ = 2 are the paper's.
    """
    check_options("sigmoid_focal_loss", reduction)
    mode = "binary" if logits.ndim >= 2 and logits.shape[1] == 1 else "multiclass"
    target, valid = check_target("sigmoid_focal_loss", logits, target, ignore_index, mode)
    xp = get_array_module(target)
    truth = one_hot(target, valid, logits.shape[1], mode, logits.dtype)
    # log(1 − σ(x)) and log σ(x) as a log-softmax over the stacked logits [0, x]
    log_probs = F.log_softmax(F.stack([Tensor(xp.zeros_like(logits.data)), logits]), 0)
    focal = _focal_map(log_probs, xp.stack([1 - truth, truth]), gamma, 0)
    if alpha is not None and alpha >= 0:
        focal = focal * (alpha * truth + (1 - alpha) * (1 - truth))
    return reduce_pixels(focal.sum(1) * valid.astype(logits.dtype), valid, reduction)


def softmax_focal_loss(logits, target, alpha=None, gamma: float = 2.0, ignore_index: int = -100,
                       reduction: str = "mean"):
    """Multi-class focal loss on softmax probabilities of ``logits`` (N, C, *S) (§7.3.5):

        FL = −α_t (1 − p_t)^γ log p_t,   p_t = softmax(logits)[target]

    ``alpha``: None (no weighting), one number for every class, or one weight per class (α_t is the
    target class's). γ = 0 and α = None give ``F.cross_entropy``. "mean" averages over counted pixels.
    """
    check_options("softmax_focal_loss", reduction)
    target, valid = check_target("softmax_focal_loss", logits, target, ignore_index)
    xp = get_array_module(target)
    classes = logits.shape[1]
    truth = one_hot(target, valid, classes, "multiclass", logits.dtype)
    focal = _focal_map(F.log_softmax(logits, 1), truth, gamma, 1)
    if alpha is None:
        weight = valid.astype(logits.dtype)
    else:
        per_class = xp.full(classes, float(alpha), dtype=logits.dtype) if np.ndim(alpha) == 0 else \
            class_vector("softmax_focal_loss", alpha, classes, logits.data)
        weight = per_class[xp.where(valid, target, 0)] * valid
    return reduce_pixels(focal * weight, valid, reduction)


class SigmoidFocalLoss(FunctionalLoss):
    """Module form of ``sigmoid_focal_loss`` (same arguments)."""

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__(sigmoid_focal_loss, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction)


class SoftmaxFocalLoss(FunctionalLoss):
    """Module form of ``softmax_focal_loss`` (same arguments)."""

    def __init__(self, alpha=None, gamma: float = 2.0, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(softmax_focal_loss, alpha=alpha, gamma=gamma, ignore_index=ignore_index, reduction=reduction)
