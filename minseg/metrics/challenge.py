"""The ISBI 2012 challenge's region scores (Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image
segmentation algorithms for connectomics", Front. Neuroanat. 9:142): the foreground-restricted Rand score
V_rand and information-theoretic score V_info, each with its split and merge parts.

Both compare two segmentations into regions — integer label maps in which 0 means "in no region" (membrane)
and every other value names a region — on the pixels that lie in a ground-truth region (the foreground
restriction). With N such pixels, n_ij of them in predicted region i and true region j, p_ij = n_ij / N and
the marginals s_i = Σ_j p_ij (prediction S), t_j = Σ_i p_ij (truth T):

    V_rand_split = Σ p_ij² / Σ t_j²     V_rand_merge = Σ p_ij² / Σ s_i²     V_rand = 2 Σ p_ij² / (Σ s_i² + Σ t_j²)
    V_info_split = I(S;T) / H(S)        V_info_merge = I(S;T) / H(T)        V_info = 2 I(S;T) / (H(S) + H(T))

where H is the entropy of a marginal (−Σ s_i log s_i) and I(S;T) = H(S) + H(T) − H(S,T) the mutual
information; each total is the harmonic mean of its split and merge parts. All scores lie in [0, 1] and are 1
for a perfect segmentation; "split" drops when a true region is cut into pieces, "merge" when true regions
are joined. A foreground pixel that the prediction puts in no region (predicted membrane) counts as a region
of its own, as in the challenge's Fiji code (Trainable Segmentation: ``RandError``,
``VariationOfInformation``), so leaving pixels out is a split, never a merge. Where an entropy is 0 (one
region) its ratio is 0/0 and is taken as 1 (nothing to split, or to merge).

The challenge labels regions as the connected components of the non-membrane pixels
(``regions_from_membranes``), and its final ranking thinned the predicted membranes first (``thin=True``: a
watershed that grows the predicted regions over them until they meet) and averaged the scores of the 2-d
slices (``challenge_scores``). It reported the best score over binarisation thresholds 0, 0.1, …, 1; call
``challenge_scores`` once per threshold for that.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..core.autograd import Tensor
from ..core.backend import to_device

__all__ = ["SplitMergeScore", "regions_from_membranes", "rand_scores", "info_scores", "challenge_scores"]


class SplitMergeScore(NamedTuple):
    """A challenge score and its two parts (see the module docstring): ``score`` is their harmonic mean."""

    score: float
    split: float
    merge: float


def _host_array(array, name):
    array = array.data if isinstance(array, Tensor) else array
    array = np.asarray(to_device(array, "cpu"))
    if array.ndim < 2:
        raise ValueError(f"{name} must be an image (H, W) or a stack (N, H, W); got shape {array.shape}")
    return array


# ----------------------------------------------------------------------------------------- regions
def _neighbour_offsets(connectivity):
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (pixel neighbours in 2-d); got {connectivity!r}")
    four = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    return four if connectivity == 4 else four + [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def _shifted(padded, dy, dx):
    """The (…, H, W) view of ``padded`` (padded by 1 on the last two axes) holding each pixel's (dy, dx) neighbour."""
    height, width = padded.shape[-2] - 2, padded.shape[-1] - 2
    return padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def _thin(labels, connectivity):
    """Grow the regions of ``labels`` over its 0 pixels, one pixel per step: a watershed of a flat membrane.

    Each 0 pixel joins the region whose front reaches it first (the one labelled neighbour, or several with the
    same label); a pixel reached by two regions in the same step becomes a dam and stays 0, as does a pixel
    reached only by dams — the rules of Vincent & Soille's flooding on a plateau, which Fiji's watershed uses.
    """
    labels = labels.copy()
    dam = np.zeros(labels.shape, dtype=bool)
    padding = [(0, 0)] * (labels.ndim - 2) + [(1, 1), (1, 1)]
    offsets = _neighbour_offsets(connectivity)
    while True:
        free = (labels == 0) & ~dam
        padded, padded_dam = np.pad(labels, padding), np.pad(dam, padding)
        highest = np.zeros_like(labels)
        lowest = np.full_like(labels, np.iinfo(labels.dtype).max)
        next_to_dam = np.zeros_like(dam)
        for dy, dx in offsets:
            neighbour = _shifted(padded, dy, dx)
            highest = np.maximum(highest, neighbour)
            lowest = np.where(neighbour > 0, np.minimum(lowest, neighbour), lowest)
            next_to_dam |= _shifted(padded_dam, dy, dx)
        reached = free & (highest > 0)
        joins = reached & (lowest == highest)
        new_dam = (reached & (lowest != highest)) | (free & (highest == 0) & next_to_dam)
        if not (joins.any() or new_dam.any()):
            return labels
        labels[joins] = highest[joins]
        dam |= new_dam


def regions_from_membranes(membrane, threshold=0.5, *, thin=False, connectivity=4) -> np.ndarray:
    """Label the regions that membranes separate: the connected components of the pixels with
    ``membrane ≤ threshold``.

    ``membrane`` is high on membranes: a boolean mask or a membrane probability, (H, W) or an (N, H, W) stack
    labelled slice by slice. For minseg's ISBI masks (0 = membrane, 1 = cell) pass ``mask == 0``; for a
    model's softmax output, the membrane class ``probabilities[:, 0]``. Returns int64 labels, 0 on membrane
    and 1…K for the K regions, numbered across the stack so that no two slices share a label.
    ``connectivity`` 4 (the challenge's) or 8 decides which pixels touch. ``thin=True`` then grows the
    regions over the membrane until they meet (``_thin``), leaving 0 only on one-pixel dams.
    """
    _neighbour_offsets(connectivity)  # validates connectivity
    membrane = _host_array(membrane, "membrane")
    structure = np.zeros((3,) * membrane.ndim, dtype=bool)  # neighbours within a slice only
    structure[(1,) * (membrane.ndim - 2)] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(~(membrane > threshold), structure=structure)
    labels = labels.astype(np.int64)
    return _thin(labels, connectivity) if thin else labels


# ----------------------------------------------------------------------------------------- scores
def _region_map(labels, name):
    labels = _host_array(labels, name)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise TypeError(f"{name} must hold integer region labels (0 = no region); got dtype {labels.dtype} "
                        "(turn a membrane map into regions with regions_from_membranes)")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must hold region labels ≥ 0 (0 = no region); found {int(labels.min())}")
    return labels.astype(np.int64)


def _overlaps(pred_labels, true_labels):
    """Counts on the true foreground: (n_ij of the predicted regions ≠ 0, their sizes a_i, the true region
    sizes b_j, the number n0 of foreground pixels in no predicted region, N)."""
    pred, true = _region_map(pred_labels, "pred_labels"), _region_map(true_labels, "true_labels")
    if pred.shape != true.shape:
        raise ValueError(f"pred_labels {pred.shape} and true_labels {true.shape} must have the same shape")
    foreground = true != 0
    if not foreground.any():
        raise ValueError("true_labels has no region (every pixel is 0); the scores are restricted to the true "
                         "regions, so there is nothing to score")
    pred, true = pred[foreground], true[foreground]
    true_sizes = np.unique(true, return_counts=True)[1]
    assigned = pred != 0
    if not assigned.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, true_sizes, pred.size, pred.size
    pred_index = np.unique(pred[assigned], return_inverse=True)[1].ravel()
    true_index = np.unique(true[assigned], return_inverse=True)[1].ravel()
    joint = np.unique(pred_index * (int(true_index.max()) + 1) + true_index, return_counts=True)[1]
    return joint, np.bincount(pred_index), true_sizes, int(pred.size - assigned.sum()), pred.size


def _sum_of_squares(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return float(counts @ counts)


def _sum_c_log_c(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.sum(counts * np.log(counts)))


def rand_scores(pred_labels, true_labels) -> SplitMergeScore:
    """Foreground-restricted Rand score of two region label maps of one shape (0 = no region):
    V_rand = 2 Σ p_ij² / (Σ s_i² + Σ t_j²), split Σ p_ij² / Σ t_j², merge Σ p_ij² / Σ s_i².

    In counts (the 1/N² factors cancel): Σ n_ij² + n0, Σ a_i² + n0 and Σ b_j², where each of the n0
    foreground pixels in no predicted region is a region of one pixel. The whole map is one segmentation;
    score 2-d slices one at a time for the challenge's per-slice average (``challenge_scores`` does).
    """
    joint, pred_sizes, true_sizes, unassigned, _ = _overlaps(pred_labels, true_labels)
    both = _sum_of_squares(joint) + unassigned
    pred = _sum_of_squares(pred_sizes) + unassigned
    true = _sum_of_squares(true_sizes)
    return SplitMergeScore(2 * both / (pred + true), both / true, both / pred)


def info_scores(pred_labels, true_labels) -> SplitMergeScore:
    """Foreground-restricted information-theoretic score of two region label maps (0 = no region):
    V_info = 2 I(S;T) / (H(S) + H(T)), split I / H(S), merge I / H(T).

    In counts: H = log N − Σ c log c / N over the marginal (or joint) counts c, so a one-pixel region adds 0
    to the sum; I = H(S) + H(T) − H(S,T). A 0/0 ratio (a single region) is 1. Natural logarithms (the
    ratios do not depend on the base).
    """
    joint, pred_sizes, true_sizes, _, total = _overlaps(pred_labels, true_labels)
    log_total = math.log(total)
    entropy_pred = log_total - _sum_c_log_c(pred_sizes) / total
    entropy_true = log_total - _sum_c_log_c(true_sizes) / total
    entropy_joint = log_total - _sum_c_log_c(joint) / total
    information = max(entropy_pred + entropy_true - entropy_joint, 0.0)
    split = information / entropy_pred if entropy_pred > 0 else 1.0
    merge = information / entropy_true if entropy_true > 0 else 1.0
    total_entropy = entropy_pred + entropy_true
    return SplitMergeScore(2 * information / total_entropy if total_entropy > 0 else 1.0, split, merge)


def challenge_scores(pred_membrane, true_membrane, threshold=0.5, *, thin=True, connectivity=4) -> dict:
    """The challenge's evaluation of an (H, W) image or (N, H, W) stack: per 2-d slice, the true regions of
    ``true_membrane`` (a membrane mask, e.g. ``mask == 0``) and the predicted regions of ``pred_membrane > threshold``
    (a membrane probability or mask; thinned by default, as in the final ranking), scored with ``rand_scores``
    and ``info_scores``; each part averaged over the slices.

    Returns ``{"v_rand": SplitMergeScore, "v_info": SplitMergeScore}`` of the per-slice means.
    """
    pred_membrane = _host_array(pred_membrane, "pred_membrane")
    true_membrane = _host_array(true_membrane, "true_membrane")
    if pred_membrane.shape != true_membrane.shape:
        raise ValueError(f"pred_membrane {pred_membrane.shape} and true_membrane {true_membrane.shape} must have "
                         "the same shape")
    pred = regions_from_membranes(pred_membrane, threshold, thin=thin, connectivity=connectivity)
    true = regions_from_membranes(true_membrane, 0.5, connectivity=connectivity)
    pred, true = pred.reshape(-1, *pred.shape[-2:]), true.reshape(-1, *true.shape[-2:])
    rand = np.mean([rand_scores(p, t) for p, t in zip(pred, true)], axis=0)
    info = np.mean([info_scores(p, t) for p, t in zip(pred, true)], axis=0)
    return {"v_rand": SplitMergeScore(*map(float, rand)), "v_info": SplitMergeScore(*map(float, info))}
