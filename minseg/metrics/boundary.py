"""Boundary scores of §7.3.5: boundary F1 (Csurka et al. 2013) and Boundary IoU (Cheng et al. 2021).

Both are computed per image and class on the masks of that class and averaged over images; the input
conventions are those of :mod:`minseg.metrics` (shared with the confusion matrix).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.backend import get_array_module, to_device
from ..functional.distance import distance_transform_edt
from .confusion import _ABSENT_VALUES, _average, _check_absent, _check_reduction, _divide, _label_maps, \
    _per_image_confusion, _reduce

__all__ = ["boundary_f1", "boundary_iou"]

_IMAGE_AXES = (-2, -1)
_BOUNDARY_CHUNK_ELEMENTS = 1 << 22  # masks transformed together per distance-transform call

def _distance_threshold(image_shape, pixels, fraction, default_fraction, name) -> float:
    """A distance in pixels: ``{name}_px`` as given, or ``{name}_fraction`` × the image diagonal (default
    ``default_fraction``). Giving both is an error, so ``2`` and ``0.0075`` can never be confused."""
    if pixels is not None and fraction is not None:
        raise ValueError(f"give either {name}_px or {name}_fraction, not both")
    if pixels is not None:
        if pixels < 0:
            raise ValueError(f"{name}_px must be a distance ≥ 0 in pixels; got {pixels!r}")
        return float(pixels)
    fraction = default_fraction if fraction is None else fraction
    if not 0 <= fraction <= 1:
        raise ValueError(f"{name}_fraction is a fraction of the image diagonal, in [0, 1]; got {fraction!r}")
    return fraction * math.hypot(*image_shape)


def _inner_band(masks, width):
    """Pixels of each (…, H, W) boolean mask within Euclidean distance ``width`` of a pixel outside it.

    Everything beyond the image border is outside every mask (as in Cheng et al.'s code), so an object
    touching the border has boundary there, and a mask has an empty boundary exactly when it is empty.
    """
    xp = get_array_module(masks)
    padding = [(0, 0)] * (masks.ndim - 2) + [(1, 1), (1, 1)]
    depth = distance_transform_edt(xp.pad(masks, padding), axes=_IMAGE_AXES)[..., 1:-1, 1:-1]
    return masks & (depth <= width)


def _contour(masks):
    """The one-pixel inner contour of each (…, H, W) mask: its pixels with a 4-neighbour outside it (the image
    border counting as outside). The same set as ``_inner_band(masks, 1)``, found without a distance transform."""
    xp = get_array_module(masks)
    padded = xp.pad(masks, [(0, 0)] * (masks.ndim - 2) + [(1, 1), (1, 1)])
    interior = padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]
    return masks & ~interior


def _pixel_totals(*masks):
    """Host (len(masks), P) array: how many pixels each of the (P, H, W) masks holds, one transfer in all."""
    xp = get_array_module(masks[0])
    return to_device(xp.stack([mask.sum(axis=_IMAGE_AXES) for mask in masks]), "cpu")


def _boundary_f1_of_pairs(predicted, target, scored, tolerance):
    """Boundary F1 of P (prediction mask, target mask) pairs; NaN where neither has a boundary pixel to score."""
    predicted_edge, target_edge = _contour(predicted), _contour(target)
    predicted_scored = predicted_edge & scored
    near_target = distance_transform_edt(~target_edge, axes=_IMAGE_AXES) <= tolerance
    near_predicted = distance_transform_edt(~predicted_edge, axes=_IMAGE_AXES) <= tolerance
    predicted_count, predicted_hits, target_count, target_hits, predicted_any = _pixel_totals(
        predicted_scored, predicted_scored & near_target, target_edge, target_edge & near_predicted, predicted_edge)
    # a mask without a boundary has no zero in ~edge, so its "distances" are not distances to anything
    predicted_hits = np.where(target_count > 0, predicted_hits, 0)
    target_hits = np.where(predicted_any > 0, target_hits, 0)
    precision = _divide(predicted_hits, predicted_count, "one")  # nothing to score on one side: nothing wrong there
    recall = _divide(target_hits, target_count, "one")
    f1 = _divide(2 * precision * recall, precision + recall, "zero")
    return np.where((predicted_count == 0) & (target_count == 0), np.nan, f1)


def _boundary_iou_of_pairs(predicted, target, scored, width):
    """Boundary IoU of P (prediction mask, target mask) pairs; NaN where both bands are empty."""
    target_band = _inner_band(target, width)
    predicted_band = _inner_band(predicted, width) & scored
    intersection, union = _pixel_totals(target_band & predicted_band, target_band | predicted_band)
    return _divide(intersection, union, "nan")


def _boundary_table(prediction, target, num_classes, ignore_index, absent, score_pairs):
    """(N, C) host table of a boundary score for every image and class (``absent`` where there is nothing).

    Only classes present in an image's target or (non-ignored) prediction are transformed, a chunk of
    (image, class) mask pairs per call of ``score_pairs(predicted, target, scored)``.
    """
    xp = get_array_module(prediction)
    images, height, width = target.shape
    confusion = to_device(_per_image_confusion(prediction, target, num_classes, ignore_index), "cpu")
    image_index, class_index = np.nonzero(confusion.sum(axis=1) + confusion.sum(axis=2))
    scored = xp.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    table = np.full((images, num_classes), np.nan)
    pairs_per_call = max(1, _BOUNDARY_CHUNK_ELEMENTS // (height * width))
    for first in range(0, len(image_index), pairs_per_call):
        chunk = slice(first, first + pairs_per_call)
        image = xp.asarray(image_index[chunk])
        label = xp.asarray(class_index[chunk]).reshape(-1, 1, 1)
        table[image_index[chunk], class_index[chunk]] = score_pairs(prediction[image] == label,
                                                                    target[image] == label, scored[image])
    return np.where(np.isnan(table), _ABSENT_VALUES[absent], table)


def _boundary_inputs(prediction, target, num_classes, absent, reduction, ignore_index):
    _check_absent(absent)
    _check_reduction(reduction)
    prediction, target = _label_maps(prediction, target, num_classes, ignore_index)
    if target.ndim != 3:
        raise ValueError(f"boundary scores need 2-d images, target (H, W) or (N, H, W); got shape {target.shape}")
    return prediction, target


def boundary_f1(prediction, target, num_classes, *, tolerance_px=None, tolerance_fraction=None, ignore_index=None,
                absent="nan", reduction="mean"):
    """Boundary F1 (BF score, Csurka et al. 2013), the boundary-sensitive metric of §7.3.5.

    Per image and class c, with B_pred and B_gt the one-pixel inner contours of the predicted and target
    masks of c (pixels with a 4-neighbour outside the mask; the image border counts as outside) and
    d(z, B) the Euclidean distance from pixel z to the nearest pixel of B:

        precision P_c = |{z ∈ B_pred : d(z, B_gt) ≤ θ}| / |B_pred|
        recall    R_c = |{z ∈ B_gt  : d(z, B_pred) ≤ θ}| / |B_gt|
        BF_c = 2 P_c R_c / (P_c + R_c)   (0 when P_c = R_c = 0)

    The tolerance θ is ``tolerance_px`` pixels or ``tolerance_fraction`` × the image diagonal; with neither,
    0.0075 of the diagonal (Csurka et al.'s and MATLAB's ``bfscore`` default).

    Ignored target pixels are not scored: predicted contour pixels on them are left out of P_c (they
    still count as B_pred in R_c's distances), and the target masks exclude them, so target contours run
    along void regions (VOC's void outlines). Empty cases: a ratio with no pixel to score counts as 1
    (nothing in it is wrong); when neither side has one, the class gets ``absent``. As contours are empty
    only for empty masks, a class in one mask but not the other scores 0 (its other ratio is 0).

    Scores are per image and averaged over images, as Csurka et al. do: ``reduction="mean"`` gives the
    mean over images of each image's class mean, ``"none"`` the per-class (C,) means over images.
    """
    prediction, target = _boundary_inputs(prediction, target, num_classes, absent, reduction, ignore_index)
    tolerance = _distance_threshold(target.shape[1:], tolerance_px, tolerance_fraction, 0.0075, "tolerance")
    table = _boundary_table(prediction, target, num_classes, ignore_index, absent,
                            lambda predicted, true, scored: _boundary_f1_of_pairs(predicted, true, scored, tolerance))
    return _reduce(*_average(table), reduction)


def boundary_iou(prediction, target, num_classes, *, width_px=None, width_fraction=None, ignore_index=None,
                 absent="nan", reduction="mean"):
    """Boundary IoU (Cheng et al. 2021): the IoU of the masks' inner boundary bands, a §7.3.5 boundary metric.

    Per image and class c, with G and P the target and predicted masks of c and X_d the pixels of X within
    Euclidean distance d of a pixel outside X (the image border counts as outside):

        BIoU_c = |G_d ∩ P_d| / |G_d ∪ P_d|

    d is ``width_px`` pixels or ``width_fraction`` × the image diagonal (default 0.02, Cheng et al.'s
    dilation ratio), at least 1 pixel. Cheng et al.'s code erodes with a 3 × 3 square, i.e. measures d
    in chessboard distance; this uses the Euclidean distance of their definition. Both bands empty
    (the class is in neither mask) → ``absent``; one empty → 0. Predicted band pixels on ignored target
    pixels are not counted. Averaged over images like ``boundary_f1`` (``reduction`` "mean" | "none").
    """
    prediction, target = _boundary_inputs(prediction, target, num_classes, absent, reduction, ignore_index)
    width = max(1.0, _distance_threshold(target.shape[1:], width_px, width_fraction, 0.02, "width"))
    table = _boundary_table(prediction, target, num_classes, ignore_index, absent,
                            lambda predicted, true, scored: _boundary_iou_of_pairs(predicted, true, scored, width))
    return _reduce(*_average(table), reduction)
