"""Dice loss (§7.3.5, §7.6.1): one minus a soft Dice coefficient per class, averaged over the classes."""

from __future__ import annotations

from ..core.backend import get_array_module
from ._contract import (FunctionalLoss, check_options, check_target, class_vector, one_hot, probabilities,
                        reduce_images)


def dice_loss(logits, target, mode: str = "multiclass", squared: bool = True, smooth_numerator: float = 1e-5,
              smooth_denominator: float = 1e-5, weight=None, per_image: bool = False, ignore_index: int = -100,
              reduction: str = "mean"):
    """Soft Dice loss of ``logits`` (N, C, *S) against the label map ``target`` (N, *S) (§7.6.1).

    With p_c the softmax probability of class c (multiclass) or the sigmoid foreground probability
    (binary mode: one channel, labels {0, 1}, only the foreground's Dice), g_c the one-hot target and the
    sums running over counted pixels (per image with ``per_image``, else over the whole batch):

        D_c = (2 Σ p_c g_c + s_num) / (Σ p_c² + Σ g_c² + s_den)     (``squared=True``, V-Net)
        D_c = (2 Σ p_c g_c + s_num) / (Σ p_c + Σ g_c + s_den)       (``squared=False``, plain)
        L   = Σ_c w_c (1 − D_c) / Σ_c w_c                            (w_c = ``weight``, default 1)

    Smoothing defaults s_num = s_den = 1e-5, as MONAI's DiceLoss: a class absent from both target and
    prediction scores D = s/s = 1 (no 0/0), and a class absent from the target but predicted is pushed
    down with the full gradient, while for any class with a few pixels the shift s/|G| is negligible.
    (Larger values, e.g. 1, blur the loss of small objects.) To leave the background out set its weight to 0.

    Ignored pixels are dropped from every sum. ``reduction`` acts over images when ``per_image``: "none"
    gives one loss per image (0 for an image with no counted pixel), "mean" averages the images that
    have counted pixels. Without ``per_image`` the batch is pooled and a single 0-d loss comes back.
    An all-ignored batch gives 0 with zero gradient.
    """
    check_options("dice_loss", reduction, mode)
    target, valid = check_target("dice_loss", logits, target, ignore_index, mode)
    xp = get_array_module(target)
    probs = probabilities(logits, mode)
    classes = probs.shape[1]
    truth = one_hot(target, valid, classes, mode, probs.dtype)
    kept = valid[:, None].astype(probs.dtype)
    predicted = probs * kept
    axes = tuple(range(2, probs.ndim)) if per_image else (0,) + tuple(range(2, probs.ndim))
    intersection = (predicted * truth).sum(axes)
    if squared:
        denominator = (predicted * predicted).sum(axes) + truth.sum(axes)  # g² = g
    else:
        denominator = predicted.sum(axes) + truth.sum(axes)
    counted = valid.reshape(valid.shape[0], -1).any(axis=1) if per_image else valid.any()
    uncounted = (~counted[:, None] if per_image else ~counted).astype(probs.dtype)
    # 1 is added to the denominator of images without counted pixels, whose loss is then zeroed: no 0/0
    dice = (2 * intersection + smooth_numerator) / (denominator + (smooth_denominator + uncounted))
    class_weight = xp.ones(classes, dtype=probs.dtype) if weight is None else \
        class_vector("dice_loss", weight, classes, probs.data)
    per_class = (1 - dice) * (class_weight / class_weight.sum())
    losses = per_class.sum(-1) * counted.astype(probs.dtype)
    return reduce_images(losses, counted, reduction, per_image)


class DiceLoss(FunctionalLoss):
    """Module form of ``dice_loss`` (same arguments)."""

    def __init__(self, mode: str = "multiclass", squared: bool = True, smooth_numerator: float = 1e-5,
                 smooth_denominator: float = 1e-5, weight=None, per_image: bool = False, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__(dice_loss, mode=mode, squared=squared, smooth_numerator=smooth_numerator,
                         smooth_denominator=smooth_denominator, weight=weight, per_image=per_image,
                         ignore_index=ignore_index, reduction=reduction)
