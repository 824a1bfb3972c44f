"""Models, datasets and losses by name — what ``minseg train --model unet --dataset cells --loss dice``
turns into objects. A run's ``config.json`` stores these names and settings, so ``evaluate`` and
``predict`` can rebuild the same model later.

Each model and dataset is one entry (``ModelEntry``, ``DatasetEntry``) that carries its facts — the size
multiple a model needs, whether a dataset has fixed-size images, is synthetic, is deformed elastically —
so that adding one is adding a line, and no other module keeps a list of names in step with this one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import functional as F
from .. import losses
from ..data import (ADE20K, ISBI2012, CamVid, Cityscapes, Compose, ElasticDeformation, MultiClassShapes, RandomCrop,
                   RandomFlip, Subset, TouchingCells, VOCSegmentation, WithWeightMaps, data_root)
from ..models import FCN8s, FCN16s, FCN32s, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus, UNet
from ..models.backbones import scale_channels

@dataclass(frozen=True)
class ModelEntry:
    """A model of the chapter: ``build(in_channels, num_classes, width, backbone)`` → Module, and
    ``input_multiple``, what its image sides must be a multiple of (1: any size)."""

    build: Callable
    input_multiple: int = 1


UNET_DEPTH = 4  # four 2× poolings: a same-padded U-Net needs sides that are multiples of 2^4 = 16

MODEL_ENTRIES = {
    "fcn32s": ModelEntry(lambda c, k, width, backbone: FCN32s(k, width, c)),
    "fcn16s": ModelEntry(lambda c, k, width, backbone: FCN16s(k, width, c)),
    "fcn8s": ModelEntry(lambda c, k, width, backbone: FCN8s(k, width, c)),
    "unet": ModelEntry(lambda c, k, width, backbone: UNet(c, k, base_channels=scale_channels(64, width),
                                                           depth=UNET_DEPTH, padding="same", batch_norm=True),
                       input_multiple=2**UNET_DEPTH),
    "deeplabv1": ModelEntry(lambda c, k, width, backbone: DeepLabV1(k, c, width, output_stride=8)),
    "deeplabv2": ModelEntry(lambda c, k, width, backbone: DeepLabV2(k, backbone, c, width, output_stride=8)),
    "deeplabv3": ModelEntry(lambda c, k, width, backbone: DeepLabV3(k, backbone, c, width, output_stride=16)),
    "deeplabv3plus": ModelEntry(lambda c, k, width, backbone: DeepLabV3Plus(k, backbone, c, width,
                                                                            output_stride=16)),
}
MODELS = tuple(MODEL_ENTRIES)


def build_model(name: str, in_channels: int, num_classes: int, width: float = 0.25, backbone: str = "resnet18"):
    """A model of the chapter by name; ``width`` > 0 scales every channel count (1.0 = the paper's widths;
    each count is rounded and at least 1, ``scale_channels``)."""
    if name not in MODEL_ENTRIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODEL_ENTRIES[name].build(in_channels, num_classes, width, backbone)


def input_multiple(model_name: str) -> int:
    """Image sides must be a multiple of this for the model (U-Net's four 2× pools); 1 means any size."""
    return MODEL_ENTRIES[model_name].input_multiple


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: ``read(split, size, length, seed, transform, instances, data_dir)`` → dataset, and its facts.

    ``fixed_size``: every image has the same size, so validation runs in batches and the weighted loss's
    maps can be cached per image (the other sets are evaluated one image at a time). ``synthetic``: generated,
    at ``size`` (real training images are cropped to it instead). ``elastic``: augmented with an elastic
    deformation, as in the U-Net paper.
    """

    read: Callable
    fixed_size: bool = False
    synthetic: bool = False
    elastic: bool = False


def _cells(split, size, length, seed, transform, instances, data_dir):  # 96 training images, 16 validation
    return TouchingCells(length or (96 if split == "train" else 16), size, seed=seed, transform=transform,
                         return_instances=instances)


def _shapes(split, size, length, seed, transform, instances, data_dir):
    return MultiClassShapes(length or (96 if split == "train" else 16), size, seed=seed, transform=transform)


def _isbi(split, size, length, seed, transform, instances, data_dir):  # 30 slices: 25 train, the last 5 validate
    return Subset(ISBI2012(data_root("isbi2012", data_dir), "train", transform=transform),
                  range(25) if split == "train" else range(25, 30))


def _reader(cls, name, split_names=None):
    """The ``read`` of a dataset stored on disk (``split_names`` renames "train"/"val" to its folders)."""
    def read(split, size, length, seed, transform, instances, data_dir):
        return cls(data_root(name, data_dir), (split_names or {}).get(split, split), transform=transform)
    return read


DATASET_ENTRIES = {
    "cells": DatasetEntry(_cells, fixed_size=True, synthetic=True, elastic=True),
    "shapes": DatasetEntry(_shapes, fixed_size=True, synthetic=True),
    "isbi2012": DatasetEntry(_isbi, fixed_size=True, elastic=True),
    "camvid": DatasetEntry(_reader(CamVid, "camvid")),
    "voc": DatasetEntry(_reader(VOCSegmentation, "voc")),
    "cityscapes": DatasetEntry(_reader(Cityscapes, "cityscapes")),
    "ade20k": DatasetEntry(_reader(ADE20K, "ade20k", {"train": "training", "val": "validation"})),
}
DATASETS = tuple(DATASET_ENTRIES)
FIXED_SIZE = tuple(name for name, entry in DATASET_ENTRIES.items() if entry.fixed_size)
LOSSES = ("ce", "weighted", "dice", "lovasz", "boundary", "focal")


def build_dataset(name: str, split: str, data_dir=None, size: int = 128, length: int | None = None,
                  augment: bool = False, weight_maps: bool = False, seed: int = 0):
    """Dataset ``name`` for ``split`` ("train" or "val"). Synthetic sets are generated (train and val from
    different seeds); real ones are read from ``data_dir`` / ``$MINSEG_DATA`` / ``../shared/data``.
    Real training images are randomly cropped to ``size``; ``augment`` adds flips (and elastic deformation
    for cells and ISBI, as in the U-Net paper). With ``weight_maps`` the same transforms move the weights too."""
    if name not in DATASET_ENTRIES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    entry = DATASET_ENTRIES[name]
    if weight_maps and not entry.fixed_size:
        raise ValueError(f"the weighted loss needs fixed-size images ({', '.join(FIXED_SIZE)}); got dataset {name!r}")
    training = split == "train"
    transforms = []
    if augment and training:
        if entry.elastic:
            transforms.append(ElasticDeformation(sigma=10))
        transforms += [RandomFlip("horizontal"), RandomFlip("vertical")]
    if not entry.synthetic and training:
        transforms.append(RandomCrop(size))
    transform = Compose(transforms) if transforms else None
    own = None if weight_maps else transform  # with weight maps WithWeightMaps applies it, to the maps too
    dataset = entry.read(split, size, length, seed if training else seed + 10_000, own, weight_maps, data_dir)
    return WithWeightMaps(dataset, transform) if weight_maps else dataset


def build_loss(name: str, ignore_index: int = 255, total_steps: int = 1000):
    """A loss callable ``(logits, target, *extras)`` by name. "weighted" expects weight maps as the extra;
    "boundary" is cross-entropy plus Kervadec's boundary loss with a weight ramped from 0.01 to 0.5."""
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits, target, ignore_index=ignore_index)
    if name == "weighted":
        return lambda logits, target, weights: losses.weighted_cross_entropy(logits, target, weights,
                                                                             ignore_index=ignore_index)
    if name == "dice":
        return lambda logits, target: (F.cross_entropy(logits, target, ignore_index=ignore_index)
                                       + losses.dice_loss(logits, target, ignore_index=ignore_index))
    if name == "lovasz":
        return lambda logits, target: losses.lovasz_softmax(logits, target, ignore_index=ignore_index)
    if name == "boundary":
        ramp = losses.LinearRamp(start=0.01, increment=0.49 / max(total_steps, 1), maximum=0.5)
        return losses.CombinedLoss(lambda logits, target: F.cross_entropy(logits, target, ignore_index=ignore_index),
                                   losses.BoundaryLoss(ignore_index=ignore_index), weight=ramp)
    if name == "focal":
        return lambda logits, target: losses.softmax_focal_loss(logits, target, ignore_index=ignore_index)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
