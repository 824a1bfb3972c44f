"""Neural-network building blocks with PyTorch's names: ``import minseg.nn as nn``; ``nn.init`` fills weights."""

from . import init
from .containers import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Dropout, Dropout2d, Flatten, Identity, LeakyReLU,
                     Linear, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh, Upsample)
from .module import IncompatibleKeys, Module, Parameter
