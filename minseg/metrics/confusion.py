"""The streaming confusion matrix and its scores: IoU, mIoU, Dice, pixel and class accuracy (§7.5.2, §7.3.5).

For class c, with M[t, p] the pixels of true class t predicted as p: TP_c = M[c, c], FP_c = Σ_t M[t, c] − TP_c,
FN_c = Σ_p M[c, p] − TP_c, and IoU_c = TP_c / (TP_c + FP_c + FN_c), Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c).
The conventions (inputs, ``ignore_index``, ``absent``, averaging) are those of :mod:`minseg.metrics`.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.autograd import Tensor
from ..core.backend import device_of, get_array_module, to_device

__all__ = ["ConfusionMatrix", "iou", "dice_score", "pixel_accuracy"]

_ABSENT_VALUES = {"nan": math.nan, "one": 1.0, "zero": 0.0}
_REDUCTIONS = ("mean", "none")


# ----------------------------------------------------------------------------------------- inputs
def _check_absent(absent):
    if absent not in _ABSENT_VALUES:
        raise ValueError(f"absent must be one of {tuple(_ABSENT_VALUES)}; got {absent!r}")


def _check_labels(labels, num_classes, ignore_index, what):
    """Raise ``ValueError`` naming the values of ``labels`` outside [0, num_classes) (``ignore_index`` allowed)."""
    xp = get_array_module(labels)
    invalid = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        invalid &= labels != ignore_index
    if bool(invalid.any()):
        values = [int(v) for v in to_device(xp.unique(labels[invalid]), "cpu")[:5]]
        allowed = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        hint = "" if ignore_index is not None or what != "target" else " (a void label such as 255 needs ignore_index)"
        raise ValueError(f"{what} contains label value(s) {values} outside [0, {num_classes}){allowed}{hint}")


def _label_maps(prediction, target, num_classes, ignore_index):
    """Validated int64 label maps (N, ...) of prediction and target, both on the prediction's device."""
    prediction = prediction.data if isinstance(prediction, Tensor) else prediction
    target = target.data if isinstance(target, Tensor) else target
    xp = get_array_module(prediction)
    prediction = xp.asarray(prediction)
    target = to_device(target, device_of(prediction))
    if target.ndim < 2:
        raise ValueError(f"target must be a label map (H, W) or a batch (N, H, W, ...); got shape {target.shape}")
    if not (np.issubdtype(target.dtype, np.integer) or target.dtype == np.bool_):
        raise TypeError(f"target must hold integer class labels; got dtype {target.dtype}")
    if target.ndim == 2:  # one image: give both a batch axis
        prediction, target = prediction[None], target[None]
    if prediction.ndim == target.ndim + 1:
        if prediction.shape[1] != num_classes:
            raise ValueError(f"prediction scores have {prediction.shape[1]} classes on axis 1; expected {num_classes}")
        prediction = prediction.argmax(axis=1)  # labels in range by construction
    elif prediction.ndim == target.ndim:
        if not (np.issubdtype(prediction.dtype, np.integer) or prediction.dtype == np.bool_):
            raise TypeError("a prediction shaped like the target must hold integer labels; got dtype "
                            f"{prediction.dtype} (pass logits or probabilities with a class axis to have them argmax-ed)")
        _check_labels(prediction, num_classes, None, "prediction")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} does not match target {tuple(target.shape)}: expected "
                         "labels of the target's shape or scores (N, C, ...) around it")
    _check_labels(target, num_classes, ignore_index, "target")
    return prediction.astype(xp.int64), target.astype(xp.int64)


def _per_image_confusion(prediction, target, num_classes, ignore_index):
    """(N, C, C) int64 confusion matrices, one per image, from a single bincount on the data's device.

    Pixel (t, p) of image n falls in bin n·(C² + 1) + t·C + p; ignored pixels go to each image's extra
    last bin, which is dropped, so they count nowhere.
    """
    xp = get_array_module(prediction)
    images, cells = target.shape[0], num_classes * num_classes
    cell = target * num_classes + prediction
    if ignore_index is not None:
        cell = xp.where(target == ignore_index, cells, cell)
    offset = xp.arange(images, dtype=xp.int64).reshape((images,) + (1,) * (target.ndim - 1)) * (cells + 1)
    counts = xp.bincount((cell + offset).ravel(), minlength=images * (cells + 1))
    return counts.reshape(images, cells + 1)[:, :cells].reshape(images, num_classes, num_classes).astype(xp.int64)


# ----------------------------------------------------------------------------------------- scores
def _divide(numerator, denominator, absent):
    """numerator / denominator elementwise (float64), with the ``absent`` value where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), _ABSENT_VALUES[absent])


def _nanmean(values, axis=None):
    """Mean of the non-NaN entries along ``axis``; NaN (without a warning) where there are none."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=axis)
    total = np.where(defined, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _average(per_image_class_scores):
    """(per-class mean over images, mean over images of each image's class mean) of an (M, C) score table."""
    return _nanmean(per_image_class_scores, axis=0), float(_nanmean(_nanmean(per_image_class_scores, axis=1)))


def _scores_from_counts(tp, fp, fn, absent):
    """Every confusion-matrix metric from (M, C) tables of TP, FP and FN (M images, or M = 1 for the dataset)."""
    iou_table = _divide(tp, tp + fp + fn, absent)
    class_iou, mean_iou = _average(iou_table)
    class_dice, mean_dice = _average(_divide(2 * tp, 2 * tp + fp + fn, absent))
    class_accuracy, mean_class_accuracy = _average(_divide(tp, tp + fn, absent))
    support = tp + fn  # target pixels of each class
    pixel_accuracy = _divide(tp.sum(axis=1), support.sum(axis=1), "nan")
    weighted = (support * np.where(support > 0, iou_table, 0.0)).sum(axis=1)
    return {"iou": class_iou, "miou": mean_iou, "dice": class_dice, "mean_dice": mean_dice,
            "class_accuracy": class_accuracy, "mean_class_accuracy": mean_class_accuracy,
            "pixel_accuracy": float(_nanmean(pixel_accuracy)),
            "frequency_weighted_iou": float(_nanmean(_divide(weighted, support.sum(axis=1), "nan")))}


class ConfusionMatrix:
    """Streaming confusion matrix M (C × C, int64): M[t, p] counts pixels of target class t predicted as p.

    ``update(prediction, target)`` adds a batch (see the module docstring for the accepted forms); the
    counts stay on the batch's device. With TP_c = M[c, c], FP_c = Σ_t M[t, c] − TP_c (predicted c,
    wrongly) and FN_c = Σ_p M[c, p] − TP_c (c missed), the scores are:

        IoU_c  = TP_c / (TP_c + FP_c + FN_c)            Jaccard index of class c (§7.5.2)
        mIoU   = (1/|C|) Σ_{c ∈ C} IoU_c                over the classes C whose IoU is defined (§7.5.2)
        Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)        the pixel F1 score of class c (§7.3.5)
        acc_c  = TP_c / (TP_c + FN_c)                   class accuracy (recall); mean class accuracy averages it
        pixel accuracy = Σ_c TP_c / Σ_c (TP_c + FN_c)   fraction of counted pixels labelled right
        fwIoU  = Σ_c w_c IoU_c,  w_c = (TP_c + FN_c) / Σ_k (TP_k + FN_k)   IoU weighted by class frequency

    ``absent`` ("nan" | "one" | "zero") sets a ratio with a zero denominator, ``per_image=True`` keeps
    (TP, FP, FN) per image and averages per-image scores instead of pooling (module docstring); images
    whose pixels are all ignored carry no evidence and are not kept. ``compute()`` returns every score in
    a dict; each is also a property. Matrices from parallel workers combine with ``merge`` or ``+``
    (``sum(matrices)`` works too); ``state_dict``/``load_state_dict`` save and restore the counts.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, absent: str = "nan", per_image: bool = False):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
        _check_absent(absent)
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.absent, self.per_image = absent, bool(per_image)
        self.reset()

    def reset(self) -> None:
        """Forget every count."""
        self._matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._image_counts = []  # (n, 3, C) arrays of per-image (TP, FP, FN), in update order

    @property
    def matrix(self):
        """The accumulated (C, C) int64 counts, rows = target class, columns = predicted class, on their device."""
        return self._matrix

    def update(self, prediction, target) -> None:
        """Count a batch: labels (N, ...) or scores (N, C, ...) against targets (N, ...), or one (H, W) image."""
        prediction, target = _label_maps(prediction, target, self.num_classes, self.ignore_index)
        xp = get_array_module(prediction)
        per_image = _per_image_confusion(prediction, target, self.num_classes, self.ignore_index)
        self._matrix = to_device(self._matrix, device_of(per_image)) + per_image.sum(axis=0)
        if self.per_image:
            tp = per_image.diagonal(axis1=1, axis2=2)
            support, predicted = per_image.sum(axis=2), per_image.sum(axis=1)
            counts = xp.stack([tp, predicted - tp, support - tp], axis=1)
            self._image_counts.append(counts[support.sum(axis=1) > 0])

    def _counts(self):
        """Host (M, C) tables of TP, FP, FN: one row per kept image, or a single row for the whole dataset."""
        if self.per_image:
            parts = [to_device(part, "cpu") for part in self._image_counts]
            counts = np.concatenate(parts) if parts else np.zeros((0, 3, self.num_classes), dtype=np.int64)
            return counts[:, 0], counts[:, 1], counts[:, 2]
        matrix = to_device(self._matrix, "cpu")
        tp = np.diagonal(matrix)
        return tp[None], (matrix.sum(axis=0) - tp)[None], (matrix.sum(axis=1) - tp)[None]

    def compute(self) -> dict:
        """All scores: ``iou``, ``dice``, ``class_accuracy`` (per class, NumPy (C,)), and the floats ``miou``,
        ``mean_dice``, ``mean_class_accuracy``, ``pixel_accuracy``, ``frequency_weighted_iou``."""
        return _scores_from_counts(*self._counts(), self.absent)

    iou = property(lambda self: self.compute()["iou"], doc="Per-class IoU (C,), NaN for undefined with absent='nan'.")
    miou = property(lambda self: self.compute()["miou"], doc="Mean IoU over the classes where it is defined.")
    dice = property(lambda self: self.compute()["dice"], doc="Per-class Dice = pixel F1 (C,).")
    mean_dice = property(lambda self: self.compute()["mean_dice"], doc="Mean Dice over the defined classes.")
    class_accuracy = property(lambda self: self.compute()["class_accuracy"], doc="Per-class recall (C,).")
    mean_class_accuracy = property(lambda self: self.compute()["mean_class_accuracy"], doc="Mean class recall.")
    pixel_accuracy = property(lambda self: self.compute()["pixel_accuracy"], doc="Correct / counted pixels.")
    frequency_weighted_iou = property(lambda self: self.compute()["frequency_weighted_iou"],
                                      doc="IoU weighted by each class's share of the target pixels.")

    def _check_compatible(self, other):
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge another ConfusionMatrix; got {type(other).__name__}")
        mine = (self.num_classes, self.ignore_index, self.per_image)
        theirs = (other.num_classes, other.ignore_index, other.per_image)
        if mine != theirs:
            raise ValueError(f"cannot merge confusion matrices with different (num_classes, ignore_index, per_image): "
                             f"{mine} and {theirs}")

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts to this matrix (on this matrix's device) and return ``self``."""
        self._check_compatible(other)
        self._matrix = self._matrix + to_device(other._matrix, device_of(self._matrix))
        self._image_counts = self._image_counts + list(other._image_counts)
        return self

    def __add__(self, other):
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        total = ConfusionMatrix(self.num_classes, self.ignore_index, self.absent, self.per_image)
        return total.merge(self).merge(other)

    def __radd__(self, other):
        if isinstance(other, int) and other == 0:  # the start value of sum(matrices)
            return self + ConfusionMatrix(self.num_classes, self.ignore_index, self.absent, self.per_image)
        return NotImplemented

    def state_dict(self) -> dict:
        """The counts as host arrays, with the settings they were counted under (storable with ``minseg.save``;
        ``absent`` only affects how counts become scores, so it is not part of the state)."""
        image_counts = (np.stack(self._counts(), axis=1) if self.per_image
                        else np.zeros((0, 3, self.num_classes), dtype=np.int64))
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "per_image": self.per_image,
                "matrix": to_device(self._matrix, "cpu").copy(), "image_counts": image_counts}

    def load_state_dict(self, state: dict) -> None:
        """Restore counts saved by ``state_dict`` into a matrix built with the same settings."""
        saved = (state["num_classes"], state["ignore_index"], state["per_image"])
        if saved != (self.num_classes, self.ignore_index, self.per_image):
            raise ValueError(f"state is for (num_classes, ignore_index, per_image) = {saved}; this matrix has "
                             f"{(self.num_classes, self.ignore_index, self.per_image)}")
        self._matrix = np.array(to_device(state["matrix"], "cpu"), dtype=np.int64)
        image_counts = np.array(to_device(state["image_counts"], "cpu"), dtype=np.int64)
        self._image_counts = [image_counts] if len(image_counts) else []

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"absent={self.absent!r}, per_image={self.per_image})")


# ------------------------------------------------------------------------------ one-shot functions
def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")


def _reduce(per_class, mean, reduction: str):
    _check_reduction(reduction)
    return mean if reduction == "mean" else per_class


def _one_shot(prediction, target, num_classes, ignore_index, absent, per_image) -> dict:
    matrix = ConfusionMatrix(num_classes, ignore_index, absent, per_image)
    matrix.update(prediction, target)
    return matrix.compute()


def iou(prediction, target, num_classes, *, ignore_index=None, absent="nan", per_image=False, reduction="mean"):
    """IoU_c = TP_c / (TP_c + FP_c + FN_c) (§7.5.2): mIoU for ``reduction="mean"``, the (C,) per-class IoU for
    ``"none"``. One ``ConfusionMatrix`` update; see it for ``absent`` and ``per_image``."""
    scores = _one_shot(prediction, target, num_classes, ignore_index, absent, per_image)
    return _reduce(scores["iou"], scores["miou"], reduction)


def dice_score(prediction, target, num_classes, *, ignore_index=None, absent="nan", per_image=False, reduction="mean"):
    """Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c), the pixel F1 of class c (§7.3.5): mean Dice for
    ``reduction="mean"``, per-class (C,) for ``"none"``. One ``ConfusionMatrix`` update."""
    scores = _one_shot(prediction, target, num_classes, ignore_index, absent, per_image)
    return _reduce(scores["dice"], scores["mean_dice"], reduction)


def pixel_accuracy(prediction, target, num_classes, *, ignore_index=None, per_image=False):
    """Correctly labelled pixels / counted (non-ignored) pixels, pooled or averaged per image (§7.5)."""
    return _one_shot(prediction, target, num_classes, ignore_index, "nan", per_image)["pixel_accuracy"]
