"""Boundary-aware losses (§7.6.3): Kervadec's boundary loss, a Sobel-gradient loss, and the pairing of a
boundary term with a regional loss under a weight that can follow a schedule."""

from __future__ import annotations

from .. import functional as F
from ..core.backend import get_array_module
from ..functional.distance import signed_distance_map
from ..nn import Module
from ._contract import FunctionalLoss, check_options, check_target, one_hot, probabilities, raw, reduce_pixels


def class_distance_maps(target, num_classes: int, ignore_index: int = -100, sampling=None):
    """Signed distance maps φ_c (N, num_classes, H, W) of each class's region in the label map ``target``.

    φ_c = ``signed_distance_map([target = c])``: negative inside class c, 0 on its outermost pixels,
    positive outside, 0 everywhere in an image where c is absent (Kervadec's convention; see
    ``minseg.functional.distance.signed_distance_map``). Ignored pixels belong to no class. Precompute these once
    per training image and pass them to ``boundary_loss(distance_maps=…)`` to save the transforms.
    """
    target = raw(target)
    xp = get_array_module(target)
    labels = xp.arange(num_classes).reshape((1, num_classes) + (1,) * (target.ndim - 1))
    regions = (target[:, None] == labels) & (target != ignore_index)[:, None]
    return signed_distance_map(regions, sampling=sampling)


def boundary_loss(logits, target, mode: str = "multiclass", classes=None, distance_maps=None, sampling=None,
                  ignore_index: int = -100, reduction: str = "mean"):
    """Kervadec et al.'s boundary loss ("Boundary loss for highly unbalanced segmentation", MIDL 2019; §7.6.3).

        L_B = (1 / (|Ω| · |K|)) · Σ_{x ∈ Ω} Σ_{c ∈ K} φ_c(x) · s_c(x)

    with s_c the softmax probability of class c (multiclass) or the sigmoid foreground probability
    (binary mode, K = {foreground}), φ_c the signed distance map of class c's ground truth (negative
    inside, see ``class_distance_maps``), Ω the counted pixels and K = ``classes`` (default all; their
    experiments leave the background out, ``classes=range(1, C)``). Probability inside the object
    lowers the loss, probability outside raises it in proportion to the distance to the object, so its
    minimum is negative. "none" gives (1/|K|) Σ_c φ_c s_c per pixel, 0 at ignored pixels.

    Used alone it drifts to an empty foreground on binary problems (their paper's §3.6.1; boundary-loss
    issues #38, #57): pair it with a regional loss, L = L_region + α·L_B, with α starting at 0.01 and
    ramped up (``CombinedLoss``, ``LinearRamp``).
    ``distance_maps`` (N, K_all, H, W) may be given precomputed; ``sampling`` is the pixel spacing.
    """
    check_options("boundary_loss", reduction, mode)
    target, valid = check_target("boundary_loss", logits, target, ignore_index, mode)
    xp = get_array_module(target)
    probs = probabilities(logits, mode)
    count = probs.shape[1]
    if distance_maps is None:
        distance_maps = class_distance_maps(target, 2 if mode == "binary" else count, ignore_index, sampling)
        distance_maps = distance_maps[:, 1:] if mode == "binary" else distance_maps  # binary: the foreground
    distance_maps = xp.asarray(raw(distance_maps), dtype=probs.dtype)
    if distance_maps.shape != probs.shape:
        raise ValueError(f"boundary_loss: distance_maps must have the probabilities' shape {probs.shape}; "
                         f"got {distance_maps.shape}")
    chosen = list(range(count)) if classes is None else [int(c) for c in classes]
    if not chosen or any(not 0 <= c < count for c in chosen):
        raise ValueError(f"boundary_loss: classes must be a non-empty list of channels in [0, {count}); "
                         f"got {classes!r}")
    selection = xp.zeros(count, dtype=probs.dtype)
    selection[xp.asarray(chosen)] = 1.0 / len(chosen)
    weights = distance_maps * selection.reshape((1, count) + (1,) * (probs.ndim - 2)) * valid[:, None]
    return reduce_pixels((probs * weights).sum(1), valid, reduction)


def _sobel_kernels(classes: int, like):
    """(2·classes, 1, 3, 3) normalised Sobel kernels (∂/∂x, ∂/∂y per class) for a grouped conv2d."""
    xp = get_array_module(like)
    derivative = xp.asarray([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=like.dtype) / 8
    pair = xp.stack([derivative, derivative.T])[:, None]
    return xp.concatenate([pair] * classes, axis=0)


def _eroded(valid):
    """Pixels whose 3×3 neighbourhood (edge pixels replicated) holds no ignored pixel."""
    xp = get_array_module(valid)
    height, width = valid.shape[-2:]
    padded = xp.pad(valid, [(0, 0)] * (valid.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    kept = xp.ones_like(valid)
    for dy in range(3):
        for dx in range(3):
            kept &= padded[..., dy:dy + height, dx:dx + width]
    return kept


def sobel_gradient_loss(logits, target, mode: str = "multiclass", ignore_index: int = -100,
                        reduction: str = "mean"):
    """Squared difference of the Sobel gradients of prediction and ground truth (§7.6.3).

        ℓ(x) = (1/K) Σ_c ‖S(p_c)(x) − S(g_c)(x)‖²,   S(u) = (k_x ⋆ u, k_y ⋆ u)

    for 4-D logits (N, C, H, W): p_c the softmax (multiclass) or sigmoid (binary mode, K = 1) probability,
    g_c the one-hot target, k_x = [[−1, 0, 1], [−2, 0, 2], [−1, 0, 1]] / 8 and k_y = k_xᵀ (normalised Sobel,
    so a gradient is in units per pixel), images padded by replicating their edge pixels (no false edge at
    the border). Both gradient components are compared, which keeps the loss smooth where an edge
    magnitude √(·) would not be. Pixels with an ignored pixel in their 3×3 window are not counted;
    "mean" averages ℓ over the counted pixels. Computed as S(p_c − g_c) with one grouped ``F.conv2d``.
    """
    check_options("sobel_gradient_loss", reduction, mode)
    target, valid = check_target("sobel_gradient_loss", logits, target, ignore_index, mode)
    if logits.ndim != 4:
        raise ValueError(f"sobel_gradient_loss: logits must be (N, C, H, W); got shape {logits.shape}")
    probs = probabilities(logits, mode)
    classes = probs.shape[1]
    difference = probs - one_hot(target, valid, classes, mode, probs.dtype)
    edges = F.conv2d(F.pad(difference, (1, 1, 1, 1), mode="replicate"), _sobel_kernels(classes, probs.data),
                     groups=classes)
    counted = _eroded(valid)
    return reduce_pixels((edges * edges).sum(1) * (counted / classes).astype(probs.dtype), counted, reduction)


class LinearRamp:
    """λ(step) = min(start + increment · step, maximum): the boundary-loss weight schedule of Kervadec et al.
    (α = 0.01, raised by 0.01 per epoch). Call it with the step (epoch or iteration) count."""

    def __init__(self, start: float = 0.01, increment: float = 0.01, maximum: float = 1.0):
        self.start, self.increment, self.maximum = start, increment, maximum

    def __call__(self, step: int) -> float:
        return min(self.start + self.increment * step, self.maximum)

    def __repr__(self) -> str:
        return f"LinearRamp(start={self.start}, increment={self.increment}, maximum={self.maximum})"


def combined(region_loss, boundary_loss, weight, step: int = 0):
    """L = L_region + λ · L_boundary (§7.6.3) for two loss values; ``weight`` is λ itself or a schedule,
    any callable of the step such as ``LinearRamp()``, evaluated at ``step``."""
    return region_loss + (weight(step) if callable(weight) else weight) * boundary_loss


class CombinedLoss(Module):
    """``region(logits, target) + λ(step) · boundary(logits, target)`` with a schedulable λ (§7.6.3).

    ``region`` and ``boundary`` are loss callables (e.g. ``DiceLoss()``, ``BoundaryLoss()``); ``weight``
    is a number or a callable of the step (default ``LinearRamp()``: 0.01, +0.01 per step). Call
    ``step()`` once per epoch (or iteration) to advance the schedule; ``steps`` counts the calls.
    Under ``minseg.app.train.Trainer`` ``steps`` is set to the optimizer step count before every step (so a
    resumed run continues the schedule exactly): give the ramp a per-iteration increment, e.g.
    ``LinearRamp(increment=0.01 / len(train_loader))`` for Kervadec's +0.01 per epoch.
    A boundary loss should not be used alone (it collapses, see ``boundary_loss``): hence this pairing.
    """

    def __init__(self, region, boundary, weight=None):
        super().__init__()
        self.region, self.boundary, self.steps = region, boundary, 0
        self.weight = LinearRamp() if weight is None else weight

    def step(self) -> None:
        self.steps += 1

    def current_weight(self) -> float:
        return self.weight(self.steps) if callable(self.weight) else self.weight

    def forward(self, logits, target):
        return combined(self.region(logits, target), self.boundary(logits, target), self.current_weight())

    def extra_repr(self) -> str:
        return f"weight={self.weight!r}, steps={self.steps}"


class BoundaryLoss(FunctionalLoss):
    """Module form of ``boundary_loss``; ``loss(logits, target, distance_maps=maps)`` passes precomputed maps."""

    def __init__(self, mode: str = "multiclass", classes=None, sampling=None, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__(boundary_loss, mode=mode, classes=classes, sampling=sampling, ignore_index=ignore_index,
                         reduction=reduction)


class SobelGradientLoss(FunctionalLoss):
    """Module form of ``sobel_gradient_loss`` (same arguments)."""

    def __init__(self, mode: str = "multiclass", ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(sobel_gradient_loss, mode=mode, ignore_index=ignore_index, reduction=reduction)
