"""Cross-entropy with a weight per pixel, and two ways to build the weights: U-Net's weight map from
instance labels (§7.3.4) and a map that grows near label boundaries (distance-map weighting, §7.6.3)."""

from __future__ import annotations

from .. import functional as F
from ..core.backend import get_array_module
from ..functional.distance import nearest_instance_distances, squared_distance_to_zero
from ._contract import FunctionalLoss, check_options, check_target, class_vector, raw, two_class_logits


def unet_weight_map(instance_labels, w0: float = 10.0, sigma: float = 5.0, class_weights=None):
    """U-Net's per-pixel loss weights from an instance label map (Ronneberger et al. 2015; §7.3.4).

        w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²)) · [x is background]

    ``instance_labels`` (H, W) or (N, H, W): 0 is background, each positive id one object (a cell).
    d1 and d2 are the distances from x to the nearest and the second-nearest object, so the second term
    peaks in the thin background gaps between touching objects and is 0 where an image has fewer than
    two objects; as in the common implementations it applies to background pixels only.
    w_c balances the two classes, background and object: by default, per image,
    w_c = P / (K · P_c) with P pixels, P_c of them in class c and K the number of classes present
    (so w_c averages to 1 over the image); ``class_weights=(w_background, w_object)`` sets them instead.
    Defaults w0 = 10 and σ = 5 px are the paper's. Returns a float64 array (not differentiable) of the
    labels' shape, on their device, for ``weighted_cross_entropy``.
    """
    labels = raw(instance_labels)
    xp = get_array_module(labels)
    batched = labels if labels.ndim == 3 else labels[None]
    if batched.ndim != 3:
        raise ValueError(f"unet_weight_map: instance_labels must be (H, W) or (N, H, W); got shape {labels.shape}")
    objects = batched > 0
    if class_weights is None:
        pixels = objects.shape[1] * objects.shape[2]
        in_objects = objects.sum(axis=(1, 2), keepdims=True)
        counts = (pixels - in_objects, in_objects)
        present = (counts[0] > 0).astype(int) + (counts[1] > 0)
        background_weight, object_weight = (pixels / (present * xp.maximum(count, 1)) for count in counts)
    else:
        background_weight, object_weight = (float(w) for w in class_weights)
    balance = xp.where(objects, object_weight, background_weight)
    nearest, second = nearest_instance_distances(batched, count=2)
    border = w0 * xp.exp(-((nearest + second) ** 2) / (2 * sigma ** 2)) * ~objects
    return (balance + border).reshape(labels.shape)


def _distance_to_other_label(labels):
    """Distance from each pixel to the nearest pixel with a different value, per image (+∞ in uniform images)."""
    xp = get_array_module(labels)
    distance = xp.full(labels.shape, xp.inf)
    for value in xp.unique(labels).tolist():
        region = labels == value
        distance = xp.where(region, xp.sqrt(squared_distance_to_zero(region, axes=(-2, -1))), distance)
    return distance


def boundary_weight_map(target, w0: float = 10.0, sigma: float = 5.0):
    """Weights that rise near the ground-truth boundaries (distance-map weighting, §7.6.3).

        w(x) = 1 + w0 · exp(−d(x)² / (2σ²))

    with d(x) the distance from x to the nearest pixel of a different label in the (N, H, W) label map
    ``target`` (the ignore label counts as a region of its own; a single-label image gives w = 1).
    Pixels next to a boundary get 1 + w0·exp(−1/(2σ²)), interior pixels tend to 1. The shape of U-Net's
    border term, here for semantic labels; defaults as in ``unet_weight_map``. Float64, not differentiable.
    """
    distance = _distance_to_other_label(raw(target))
    xp = get_array_module(distance)
    return 1.0 + w0 * xp.exp(-(distance ** 2) / (2 * sigma ** 2))


def weighted_cross_entropy(logits, target, pixel_weight, weight=None, ignore_index: int = -100,
                           reduction: str = "mean", label_smoothing: float = 0.0, mode: str = "multiclass"):
    """Cross-entropy of ``logits`` with a weight per pixel (U-Net's energy, §7.3.4; weighted CE, §7.6.3).

    With ℓ(x) = −w_{t(x)} log p_{t(x)}(x) the pixel's (class-weighted) cross-entropy from ``F.cross_entropy``
    and v(x) = 0 at ignored pixels, 1 elsewhere:

        "none": v(x)·pw(x)·ℓ(x) per pixel,  "sum": Σ_x v·pw·ℓ,  "mean": Σ_x v·pw·ℓ / Σ_x v·pw·w_{t(x)}

    so "mean" is a weighted average that equals ``F.cross_entropy`` when ``pixel_weight`` is 1 everywhere
    (for the chapter's (1/N)·Σ w(i)·CE use "sum" and divide by N). ``pixel_weight``: an array or Tensor
    broadcastable to the target's (N, *S) shape, e.g. from ``unet_weight_map``; it is a constant (no
    gradient). Binary mode: (N, 1, *S) logits and {0, 1} labels, i.e. binary cross-entropy with logits,
    the chapter's −[g log p + (1 − g) log(1 − p)]. An all-ignored batch gives 0 (0/1) with zero gradient.
    """
    check_options("weighted_cross_entropy", reduction, mode)
    target, valid = check_target("weighted_cross_entropy", logits, target, ignore_index, mode)
    xp = get_array_module(target)
    if mode == "binary":
        logits = two_class_logits(logits)
    classes = logits.shape[1]
    pixel_weight = xp.broadcast_to(xp.asarray(raw(pixel_weight), dtype=logits.dtype), target.shape)
    class_weight = xp.ones(classes, dtype=logits.dtype) if weight is None else \
        class_vector("weighted_cross_entropy", weight, classes, logits.data)
    per_pixel = F.cross_entropy(logits, target, class_weight, ignore_index, "none", label_smoothing)
    loss_map = per_pixel * pixel_weight
    if reduction == "none":
        return loss_map
    total = loss_map.sum()
    if reduction == "sum":
        return total
    normaliser = (pixel_weight * class_weight[xp.where(valid, target, 0)] * valid).sum()
    return total / xp.where(normaliser != 0, normaliser, 1)


def distance_weighted_cross_entropy(logits, target, w0: float = 10.0, sigma: float = 5.0, weight=None,
                                    ignore_index: int = -100, reduction: str = "mean", mode: str = "multiclass"):
    """Cross-entropy weighted by distance to the ground-truth boundaries (§7.6.3):
    ``weighted_cross_entropy(logits, target, boundary_weight_map(target, w0, sigma), …)``, so with
    d(x) the distance to the nearest differently-labelled pixel each pixel's cross-entropy is multiplied by
    1 + w0·exp(−d(x)²/(2σ²)). Options and reductions as in ``weighted_cross_entropy``.
    """
    return weighted_cross_entropy(logits, target, boundary_weight_map(target, w0, sigma), weight=weight,
                                  ignore_index=ignore_index, reduction=reduction, mode=mode)


class WeightedCrossEntropyLoss(FunctionalLoss):
    """Module form of ``weighted_cross_entropy``: ``loss(logits, target, pixel_weight)``."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
                 mode: str = "multiclass"):
        super().__init__(weighted_cross_entropy, weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing, mode=mode)


class DistanceWeightedCrossEntropyLoss(FunctionalLoss):
    """Module form of ``distance_weighted_cross_entropy``."""

    def __init__(self, w0: float = 10.0, sigma: float = 5.0, weight=None, ignore_index: int = -100,
                 reduction: str = "mean", mode: str = "multiclass"):
        super().__init__(distance_weighted_cross_entropy, w0=w0, sigma=sigma, weight=weight,
                         ignore_index=ignore_index, reduction=reduction, mode=mode)
