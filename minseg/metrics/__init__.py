"""Segmentation metrics: a streaming confusion matrix (IoU, mIoU, Dice, accuracies; §7.5.2 and §7.3.5), the
boundary scores of §7.3.5 (boundary F1 after Csurka et al. 2013, Boundary IoU after Cheng et al. 2021), and the
ISBI 2012 challenge's region scores V_rand and V_info (Arganda-Carreras et al. 2015).

Modules: ``confusion`` (``ConfusionMatrix``, ``iou``, ``dice_score``, ``pixel_accuracy``), ``boundary``
(``boundary_f1``, ``boundary_iou``) and ``challenge`` (``rand_scores``, ``info_scores``, ``challenge_scores``,
``regions_from_membranes``); everything is importable from ``minseg.metrics``.

For the class scores, pixels are counted where the predictions live (NumPy or CuPy, one code path, one
``bincount`` per batch); the per-class arithmetic that turns the small count tables into scores runs on the
host and returns NumPy.

Conventions of the confusion-matrix and boundary scores (the challenge scores compare region label maps
instead; see :mod:`minseg.metrics.challenge`):

* ``prediction`` is a label map of integers with the target's shape, or scores (logits or probabilities)
  with one extra class axis right after the batch axis, turned into labels by argmax. ``target`` is
  (N, H, W) — or (N, ...) for the confusion matrix; a 2-d (H, W) target is a single image. Minseg
  Tensors, NumPy and CuPy arrays are all accepted; a target elsewhere is copied to the prediction's device.
* ``ignore_index``: target pixels with this label count nowhere, neither in a numerator nor in a
  denominator. Any other target or predicted value outside [0, num_classes) raises ``ValueError`` naming it.
* ``absent`` decides a per-class ratio whose denominator is 0. For IoU and Dice that happens exactly when
  the class is in neither the prediction nor the target (for class accuracy: not in the target; for the
  boundary scores: no boundary on either side). ``"nan"`` (default) leaves it out of every mean, as the
  class says nothing about the model; ``"one"`` scores it perfect (absence correctly predicted);
  ``"zero"`` scores it as a failure, which drags the means down for classes that were never there (the
  pitfall of torchmetrics #1693). Before any update every class is absent.
* Averaging: dataset-level pools the counts of every image, then divides once; per-image
  (``per_image=True``) scores each image alone and averages those scores (a class is averaged over the
  images where it is defined), so large and small images weigh the same. A "mean" over classes is
  the mean of the defined per-class scores; per image, each image's own mean, averaged over images.
"""

from .boundary import boundary_f1, boundary_iou
from .challenge import SplitMergeScore, challenge_scores, info_scores, rand_scores, regions_from_membranes
from .confusion import ConfusionMatrix, dice_score, iou, pixel_accuracy

__all__ = ["ConfusionMatrix", "iou", "dice_score", "pixel_accuracy", "boundary_f1", "boundary_iou",
           "SplitMergeScore", "rand_scores", "info_scores", "challenge_scores", "regions_from_membranes"]
