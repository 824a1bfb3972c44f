"""The chapter's architectures (§7.2–§7.4) and the backbones they are built on."""

from .backbones import (VGG, BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, vgg16,
                        vgg16_features)
from .deeplab import ASPP, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus, SeparableConv2d, SumASPP
from .unet import UNet, unet_output_size, unet_valid_input_size
from .fcn import FCN8s, FCN16s, FCN32s, bilinear_upsampling, convolutionalize
