"""Lovász-Softmax and the binary Lovász hinge (Berman, Rannen Triki & Blaschko, CVPR 2018; §7.6.2).

The Jaccard loss of a class, 1 − |G ∩ P| / |G ∪ P|, is a set function of the mispredicted pixels.
Its Lovász extension evaluates it on a vector of pixel errors e ∈ [0, 1]^P instead. Sort the errors in
decreasing order, e_σ(1) ≥ … ≥ e_σ(P), sort the 0/1 ground truth g the same way, and let J_i be the
Jaccard loss when the i largest-error pixels are the mistakes:

    J_i = 1 − (|G| − Σ_{k≤i} g_k) / (|G| + Σ_{k≤i} (1 − g_k)),   J_0 = 0,
    L(e) = Σ_i e_σ(i) · (J_i − J_{i−1}).

L is piecewise linear, equals the Jaccard loss on 0/1 errors, and its gradient with respect to e_σ(i)
is the increment J_i − J_{i−1}: ``LovaszExtension`` computes exactly that.
"""

from __future__ import annotations

from .. import functional as F
from ..core.autograd import Function, Tensor
from ..core.backend import get_array_module
from ._contract import FunctionalLoss, check_options, check_target, one_hot, reduce_images


def jaccard_increments(truth_sorted):
    """Δ_i = J_i − J_{i−1} along the last axis, for ground truth (0/1) sorted by decreasing error."""
    xp = get_array_module(truth_sorted)
    objects = truth_sorted.sum(axis=-1, keepdims=True)
    intersection = objects - xp.cumsum(truth_sorted, axis=-1)
    union = objects + xp.cumsum(1 - truth_sorted, axis=-1)  # ≥ 1: |G| ≥ 1, or every pixel adds 1 − g = 1
    jaccard = 1 - intersection / union
    return xp.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)


class LovaszExtension(Function):
    """Lovász extension of the Jaccard loss, L = Σ_i e_σ(i) Δ_i, for every row of (B, K, P) errors.

    ``truth`` (B, K, P) is the 0/1 ground truth of each class, ``valid`` (B, 1, P) marks counted pixels:
    uncounted ones sort after all others and are left out of the sum, so they change nothing. Output
    (B, K). Backward: dL/de_σ(i) = Δ_i (the sorting permutation is held fixed, as for any piecewise-
    linear function; ties have equal errors, so the value does not depend on how they are broken).
    """

    def forward(self, errors, truth, valid):
        xp = get_array_module(errors)
        valid = xp.broadcast_to(valid, errors.shape)
        order = xp.argsort(-xp.where(valid, errors, -xp.inf), axis=-1)
        errors_sorted = xp.take_along_axis(errors, order, axis=-1)
        truth_sorted = xp.take_along_axis(truth, order, axis=-1)
        increments = jaccard_increments(truth_sorted) * xp.take_along_axis(valid, order, axis=-1)
        self.save_for_backward(order, increments)
        return (errors_sorted * increments).sum(axis=-1)

    def backward(self, grad):
        order, increments = self.saved
        xp = get_array_module(grad)
        grad_sorted = grad[..., None] * increments
        unsort = xp.argsort(order, axis=-1)
        return xp.take_along_axis(grad_sorted, unsort, axis=-1), None, None


def _pool_batch(values, per_image: bool):
    """(N, K, *S) → (N, K, P) per image, or (1, K, N·P) with the batch pooled into one image."""
    if not per_image:
        values = F.transpose(values, 0, 1) if isinstance(values, Tensor) else values.swapaxes(0, 1)
        return values.reshape(1, values.shape[0], -1)
    return values.reshape(values.shape[0], values.shape[1], -1)


def _class_selection(classes, truth, name: str):
    """(B, K) 0/1 mask of the classes averaged: present in the ground truth, all, or a given list."""
    xp = get_array_module(truth)
    count = truth.shape[1]
    if isinstance(classes, str) and classes == "present":
        return truth.sum(axis=-1) > 0
    if isinstance(classes, str) and classes == "all":
        return xp.ones(truth.shape[:2], dtype=bool)
    chosen = None if isinstance(classes, str) else [int(c) for c in classes]
    if not chosen or any(not 0 <= c < count for c in chosen):
        raise ValueError(f"{name}: classes must be 'present', 'all' or a non-empty list of classes in "
                         f"[0, {count}); got {classes!r}")
    selected = xp.zeros(count, dtype=bool)
    selected[xp.asarray(chosen)] = True
    return xp.broadcast_to(selected, truth.shape[:2])


def lovasz_softmax(logits, target, classes="present", per_image: bool = False, ignore_index: int = -100,
                   reduction: str = "mean"):
    """Lovász-Softmax: a surrogate of 1 − mIoU, convex in the pixel errors, for ``logits`` (N, C, *S) (§7.6.2).

    p = softmax(logits) over the classes; for class c the pixel errors are e = |[t = c] − p_c| and its
    loss is the Lovász extension of the Jaccard loss (module docstring). The loss averages the classes in
    ``classes``: "present" (default, as Berman's code) those that occur in the counted ground truth,
    "all" every class (an absent class then costs its largest predicted probability), or a list.
    ``per_image=False`` (Berman's default) pools the batch into one set of pixels; ``per_image=True``
    computes one loss per image, and ``reduction`` then acts over the images ("mean" counts images with
    at least one counted pixel). Ignored pixels are left out of both the sorting and the Jaccard sets;
    an all-ignored batch, or no selected class, gives 0 with zero gradient.
    """
    check_options("lovasz_softmax", reduction)
    target, valid = check_target("lovasz_softmax", logits, target, ignore_index)
    probs = F.softmax(logits, 1)
    truth = one_hot(target, valid, probs.shape[1], "multiclass", probs.dtype)
    return _lovasz(probs, truth, valid, lambda p, g: g + (1 - 2 * g) * p, classes, per_image, reduction,
                   "lovasz_softmax")


def lovasz_hinge(logits, target, per_image: bool = True, ignore_index: int = -100, reduction: str = "mean"):
    """Binary Lovász hinge loss from (N, 1, *S) logits and {0, 1} labels (§7.6.2).

    With signs s = 2t − 1, the hinge errors e = max(0, 1 − s · logit) go through the Lovász extension of
    the foreground's Jaccard loss. Labels other than 0, 1 and ``ignore_index`` raise a ValueError.
    ``per_image=True`` is Berman's default for the hinge (one loss per image, then ``reduction`` over
    images); ignored pixels are left out, and an all-ignored batch gives 0 with zero gradient.
    """
    check_options("lovasz_hinge", reduction, "binary")
    target, valid = check_target("lovasz_hinge", logits, target, ignore_index, "binary")
    truth = one_hot(target, valid, 1, "binary", logits.dtype)
    return _lovasz(logits, truth, valid, lambda x, g: F.relu(1 - x * (2 * g - 1)), "all", per_image, reduction,
                   "lovasz_hinge")


def _lovasz(scores, truth, valid, pixel_errors, classes, per_image, reduction, name):
    xp = get_array_module(truth)
    scores = _pool_batch(scores, per_image)
    truth = _pool_batch(truth, per_image)
    valid = _pool_batch(valid[:, None], per_image)
    per_class = LovaszExtension.apply(pixel_errors(scores, truth), truth, valid)  # (B, K)
    selected = _class_selection(classes, truth, name) & valid.any(axis=-1)
    counted = selected.sum(axis=-1)
    weights = (selected / xp.maximum(counted, 1)[:, None]).astype(truth.dtype)
    return reduce_images((per_class * weights).sum(-1), counted > 0, reduction, per_image)


class LovaszSoftmaxLoss(FunctionalLoss):
    """Module form of ``lovasz_softmax`` (same arguments)."""

    def __init__(self, classes="present", per_image: bool = False, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(lovasz_softmax, classes=classes, per_image=per_image, ignore_index=ignore_index,
                         reduction=reduction)


class LovaszHingeLoss(FunctionalLoss):
    """Module form of ``lovasz_hinge`` (same arguments)."""

    def __init__(self, per_image: bool = True, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(lovasz_hinge, per_image=per_image, ignore_index=ignore_index, reduction=reduction)
