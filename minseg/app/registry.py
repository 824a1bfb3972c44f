"""Models, datasets and losses by name — what ``minseg train --model unet --dataset cells --loss dice``
turns into objects. A run's ``config.json`` stores these names and settings, so ``evaluate`` and
``predict`` can rebuild the same model later."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import losses
from ..data import (ADE20K, ISBI2012, CamVid, Cityscapes, Compose, ElasticDeformation, MultiClassShapes, RandomCrop,
                   RandomFlip, TouchingCells, VOCSegmentation, data_root)
from ..models import FCN8s, FCN16s, FCN32s, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus, UNet
from ..models.backbones import scale_channels

MODELS = ("fcn32s", "fcn16s", "fcn8s", "unet", "deeplabv1", "deeplabv2", "deeplabv3", "deeplabv3plus")
DATASETS = ("cells", "shapes", "isbi2012", "camvid", "voc", "cityscapes", "ade20k")
LOSSES = ("ce", "weighted", "dice", "lovasz", "boundary", "focal")
SYNTHETIC = ("cells", "shapes")


def build_model(name: str, in_channels: int, num_classes: int, width: float = 0.25, backbone: str = "resnet18"):
    """A model of the chapter by name; ``width`` > 0 scales every channel count (1.0 = the paper's widths;
    each count is rounded and at least 1, ``scale_channels``)."""
    if name.startswith("fcn"):
        return {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s}[name](num_classes, width, in_channels)
    if name == "unet":
        return UNet(in_channels, num_classes, base_channels=scale_channels(64, width), depth=4, padding="same",
                    batch_norm=True)
    if name == "deeplabv1":
        return DeepLabV1(num_classes, in_channels, width, output_stride=8)
    if name in ("deeplabv2", "deeplabv3", "deeplabv3plus"):
        cls = {"deeplabv2": DeepLabV2, "deeplabv3": DeepLabV3, "deeplabv3plus": DeepLabV3Plus}[name]
        return cls(num_classes, backbone, in_channels, width, output_stride=16 if name != "deeplabv2" else 8)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def input_multiple(model_name: str) -> int:
    """Image sides must be a multiple of this for the model (U-Net's four 2× pools); 1 means any size."""
    return 16 if model_name == "unet" else 1


class WithWeightMaps:
    """Adds U-Net's per-pixel weight map (§7.3.4) to each sample of a dataset: (image, mask, weights).

    With instance labels (synthetic cells) it is ``unet_weight_map``; otherwise ``boundary_weight_map`` of
    the semantic mask. Maps are computed once per clean sample and cached; ``sample`` then passes image,
    mask and map through ``transform`` together (``transform(image, mask, rng, weights)``), so an elastic
    deformation or a crop moves the weights with the pixels they belong to.
    """

    def __init__(self, dataset, transform=None):
        self.dataset, self.transform, self._cache = dataset, transform, {}
        for attribute in ("num_classes", "class_names", "palette", "ignore_index"):
            setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if index not in self._cache:
            sample = self.dataset[index]
            image, mask = sample[0], sample[1]
            if len(sample) > 2:
                weights = losses.unet_weight_map(sample[2])
            else:
                weights = losses.boundary_weight_map(np.where(mask == self.ignore_index, 0, mask))
            self._cache[index] = (image, mask, np.asarray(weights, dtype=np.float32))
        return self._cache[index]

    def sample(self, index, rng):
        image, mask, weights = self[index]
        if self.transform is not None:
            image, mask, weights = self.transform(image, mask, rng, weights)
        return image.copy(), mask.copy(), weights.copy()


def build_dataset(name: str, split: str, data_dir=None, size: int = 128, length: int | None = None,
                  augment: bool = False, weight_maps: bool = False, seed: int = 0):
    """Dataset ``name`` for ``split`` ("train" or "val"). Synthetic sets are generated (train and val from
    different seeds); real ones are read from ``data_dir`` / ``$MINSEG_DATA`` / ``../shared/data``.
    Real training images are randomly cropped to ``size``; ``augment`` adds flips (and elastic deformation
    for cells and ISBI, as in the U-Net paper). With ``weight_maps`` the same transforms move the weights too."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if weight_maps and name not in ("cells", "shapes", "isbi2012"):
        raise ValueError(f"the weighted loss needs fixed-size images (cells, shapes, isbi2012); got dataset {name!r}")
    training = split == "train"
    transforms = []
    if augment and training:
        if name in ("cells", "isbi2012"):
            transforms.append(ElasticDeformation(sigma=10))
        transforms += [RandomFlip("horizontal"), RandomFlip("vertical")]
    if name not in SYNTHETIC and training:
        transforms.append(RandomCrop(size))
    transform = Compose(transforms) if transforms else None
    own = None if weight_maps else transform  # with weight maps WithWeightMaps applies it, to the maps too
    split_seed = seed if training else seed + 10_000
    if name == "cells":
        dataset = TouchingCells(length or (96 if training else 16), size, seed=split_seed, transform=own,
                                return_instances=weight_maps)
    elif name == "shapes":
        dataset = MultiClassShapes(length or (96 if training else 16), size, seed=split_seed, transform=own)
    elif name == "isbi2012":  # 30 labelled slices: the first 25 train, the last 5 validate
        dataset = _Subset(ISBI2012(data_root(name, data_dir), "train", transform=own),
                          range(25) if training else range(25, 30))
    else:
        reader = {"camvid": CamVid, "voc": VOCSegmentation, "cityscapes": Cityscapes, "ade20k": ADE20K}[name]
        split_name = {"ade20k": {"train": "training", "val": "validation"}}.get(name, {}).get(split, split)
        dataset = reader(data_root(name, data_dir), split_name, transform=own)
    return WithWeightMaps(dataset, transform) if weight_maps else dataset


class _Subset:
    """Samples ``indices`` of a dataset, keeping its attributes."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        for attribute in ("num_classes", "class_names", "palette", "ignore_index"):
            setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def sample(self, index, rng):
        return self.dataset.sample(self.indices[index], rng)


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
