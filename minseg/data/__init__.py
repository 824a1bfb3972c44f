"""Data: batching (``DataLoader``), synthetic data, dataset readers, wrappers (``Subset``, ``WithWeightMaps``)
and joint image/mask transforms."""

from .datasets import (ADE20K, ISBI2012, CamVid, Cityscapes, SegmentationDataset, VOCSegmentation, color_map,
                       data_root)
from .loader import DataLoader, default_collate
from .synthetic import ImbalancedShapes, MultiClassShapes, TouchingCells
from .transforms import (Compose, ElasticDeformation, PhotometricJitter, RandomAffine, RandomCrop, RandomFlip,
                         RandomHorizontalFlip, RandomVerticalFlip, warp)
from .wrappers import Subset, WithWeightMaps
