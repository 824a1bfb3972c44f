"""Optimizers and learning-rate schedules with PyTorch's API: ``import minseg.optim as optim``.

``optim.SGD``, ``optim.Adam``, ``optim.AdamW`` and the schedules of ``optim.lr_scheduler`` (also available
here directly): ``StepLR``, ``CosineAnnealingLR``, ``PolynomialLR``, ``PolyLR``, ``LinearLR``, ``SequentialLR``.
"""

from . import lr_scheduler
from .lr_scheduler import (CosineAnnealingLR, LinearLR, LRScheduler, PolyLR, PolynomialLR, SequentialLR,
                           StepLR)
from .optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler", "LRScheduler", "StepLR", "CosineAnnealingLR",
           "PolynomialLR", "PolyLR", "LinearLR", "SequentialLR"]
