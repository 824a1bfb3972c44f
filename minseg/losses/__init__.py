"""Segmentation losses of §7.3.4, §7.3.5 and §7.6 under one contract (see ``_contract``): logits in,
integer label maps with ``ignore_index`` as targets, ``reduction`` "mean" | "sum" | "none", and a module
wrapper for each function. ``import minseg.losses`` (not imported by ``import minseg``)."""

from .boundary import (BoundaryLoss, CombinedLoss, LinearRamp, SobelGradientLoss, boundary_loss, class_distance_maps,
                       combined, sobel_gradient_loss)
from .dice import DiceLoss, dice_loss
from .focal import SigmoidFocalLoss, SoftmaxFocalLoss, sigmoid_focal_loss, softmax_focal_loss
from .lovasz import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge, lovasz_softmax
from .weighted_ce import (DistanceWeightedCrossEntropyLoss, WeightedCrossEntropyLoss, boundary_weight_map,
                          distance_weighted_cross_entropy, unet_weight_map, weighted_cross_entropy)

__all__ = [
    "BoundaryLoss", "CombinedLoss", "DiceLoss", "DistanceWeightedCrossEntropyLoss", "LinearRamp", "LovaszHingeLoss",
    "LovaszSoftmaxLoss", "SigmoidFocalLoss", "SobelGradientLoss", "SoftmaxFocalLoss", "WeightedCrossEntropyLoss",
    "boundary_loss", "boundary_weight_map", "class_distance_maps", "combined", "dice_loss",
    "distance_weighted_cross_entropy", "lovasz_hinge", "lovasz_softmax", "sigmoid_focal_loss", "sobel_gradient_loss",
    "softmax_focal_loss", "unet_weight_map", "weighted_cross_entropy",
]
