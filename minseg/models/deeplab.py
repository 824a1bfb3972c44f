"""DeepLab v1, v2, v3 and v3+ (§7.4): atrous convolution instead of the last downsamplings, ASPP, decoder.

Each version changes one thing (§7.4.5):

* **v1** (``DeepLabV1``): VGG-16 whose last two max pools keep stride 1, so features stay at 1/8 of the
  input; the convolutions after them are dilated to keep their field of view (§7.4.2), and the
  "LargeFOV" head is a 3×3 fc6 of rate 12 with 1024 channels, a 1×1 fc7 and a 1×1 fc8 giving the scores.
* **v2** (``DeepLabV2``): ASPP (§7.4.3) — four such heads at rates 6, 12, 18, 24 read the same features
  and their scores are summed; on a ResNet each branch is a single 3×3 convolution to the scores.
* **v3** (``DeepLabV3``): ResNet encoder with output stride 16 or 8 (and optionally multi-grid), ASPP
  rebuilt as a 1×1 branch, three 3×3 atrous branches and an image-pooling branch, all with batch norm,
  concatenated and projected by a 1×1 convolution.
* **v3+** (``DeepLabV3Plus``): v3 plus a decoder that upsamples the ASPP output 4× to the stride-4
  ``layer1`` features (reduced to 48 channels), concatenates, and refines with two atrous separable
  convolutions (a depthwise 3×3 then a pointwise 1×1).

**Rates follow the output stride.** An atrous rate is measured in feature-map pixels, so the same field
of view in image pixels needs twice the rate when the features are twice as dense: v3's (6, 12, 18) at
output stride 16 are (12, 24, 36) at 8, and v1/v2's rates (given at 8) halve at 16. Keeping the rates of
one stride at the other is a known pitfall (smp #390, torchvision #7956): the constructors refuse it
(``ValueError``) unless ``allow_custom_rates=True``.

Every model returns logits resized to the input's size (bilinear, ``align_corners=False``). ``width``
scales all channel counts (``scale_channels``); ``width=1`` is the paper's network. The CRF that v1/v2
add after the network is ``minseg.inference.crf`` (§7.4.4).
"""

from __future__ import annotations

import numbers
from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..functional.resize import bilinear_resize
from .backbones import VGGFeatures, resnet18, resnet34, resnet50, resnet101, scale_channels, vgg16_features

RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}

# the papers' rates, per output stride
LARGEFOV_RATES = {8: (12,), 16: (6,)}  # v1: the fc6 rate
V2_RATES = {8: (6, 12, 18, 24), 16: (3, 6, 9, 12)}
V3_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}


def atrous_rates(model: str, paper_rates: dict, output_stride: int, rates=None,
                 allow_custom_rates: bool = False) -> tuple:
    """The rates to build ``model`` with: the paper's for ``output_stride`` when ``rates`` is None, else
    ``rates`` — which must equal them unless ``allow_custom_rates`` (then any positive ints)."""
    if output_stride not in paper_rates:
        raise ValueError(f"{model}: output_stride must be one of {sorted(paper_rates)}; got {output_stride!r}")
    expected = paper_rates[output_stride]
    if rates is None:
        return expected
    rates = tuple(rates)
    if not rates or not all(isinstance(rate, numbers.Integral) and not isinstance(rate, bool) and rate >= 1
                            for rate in rates):
        raise ValueError(f"{model}: atrous rates must be positive ints; got {rates!r}")
    rates = tuple(int(rate) for rate in rates)
    if rates != expected and not allow_custom_rates:
        meant = [stride for stride, paper in paper_rates.items() if paper == rates]
        hint = f" — those are the rates for output_stride={meant[0]}" if meant else ""
        raise ValueError(f"{model}: atrous rates {rates} do not match output_stride={output_stride}{hint}; "
                         f"at output_stride={output_stride} the paper uses {expected} (rates scale with 1/output "
                         f"stride to keep the field of view in image pixels). Pass rates={expected} or leave "
                         f"rates=None, or pass allow_custom_rates=True to use {rates} anyway.")
    return rates


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> list:
    padding = dilation * (kernel_size - 1) // 2
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _resnet_backbone(model, backbone, width, in_channels, output_stride, multi_grid):
    if backbone not in RESNETS:
        raise ValueError(f"{model}: backbone must be one of {sorted(RESNETS)}; got {backbone!r}")
    return RESNETS[backbone](width=width, in_channels=in_channels, output_stride=output_stride, multi_grid=multi_grid)


# ---------------------------------------------------------------------------------------- v1 / v2 on VGG
def dilated_vgg16_features(width: float = 1.0, in_channels: int = 3, output_stride: int = 8) -> VGGFeatures:
    """VGG-16's ``features`` as DeepLab v1/v2 use them (§7.4.2).

    The max pools become 3×3 with padding 1 (so each halves the size rounding up, as in DeepLab); once
    the output stride is reached they keep stride 1, and every convolution after such a pool has its
    dilation (and padding) doubled, so it samples the same input pixels it would have seen at the coarser
    resolution. At output stride 8 this is pool4 and pool5 at stride 1 and conv5_x at rate 2. Pools have
    no weights, so the ``state_dict`` keys are torchvision's ``vgg16().features``'.
    """
    features = vgg16_features(width, in_channels)
    stride, dilation = 1, 1
    for index, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            step = 2 if stride < output_stride else 1
            features.add_module(str(index), nn.MaxPool2d(kernel_size=3, stride=step, padding=1))
            stride, dilation = stride * step, dilation * (2 // step)
        elif isinstance(layer, nn.Conv2d):
            layer.dilation = layer.padding = (dilation, dilation)
    return features


def largefov_head(in_channels: int, num_classes: int, rate: int, hidden: int, dropout: float) -> nn.Sequential:
    """fc6 (3×3, dilation ``rate``, ``hidden`` channels) → ReLU → dropout → fc7 (1×1) → ReLU → dropout →
    fc8 (1×1 → scores): DeepLab v1's LargeFOV head, and one branch of v2's ASPP-L on VGG."""
    return nn.Sequential(OrderedDict([
        ("fc6", nn.Conv2d(in_channels, hidden, 3, padding=rate, dilation=rate)),
        ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Conv2d(hidden, hidden, 1)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Conv2d(hidden, num_classes, 1))]))


class DeepLabV1(nn.Module):
    """DeepLab v1 (LargeFOV): ``backbone`` = dilated VGG-16 at ``output_stride`` 8 (or 16), ``head`` =
    ``largefov_head`` with fc6 at rate 12 (6 at stride 16) and 1024w channels (§7.4.5). ImageNet weights
    load into ``backbone`` under torchvision's keys with ``features.`` renamed ``backbone.``."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0, output_stride: int = 8,
                 rate=None, allow_custom_rates: bool = False, dropout: float = 0.5):
        super().__init__()
        (rate,) = atrous_rates("DeepLabV1", LARGEFOV_RATES, output_stride, None if rate is None else (rate,),
                               allow_custom_rates)
        self.output_stride, self.rate = output_stride, rate
        self.backbone = dilated_vgg16_features(width, in_channels, output_stride)
        self.head = largefov_head(self.backbone.stage_channels["pool5"], num_classes, rate, scale_channels(1024, width),
                                  dropout)

    def forward(self, x):
        return bilinear_resize(self.head(self.backbone(x)), x.shape[-2:])


class SumASPP(nn.Module):
    """DeepLab v2's ASPP (§7.4.3): parallel branches at different rates on the same features, whose
    class scores are summed. ``hidden`` given: each branch is a ``largefov_head`` (ASPP-L on VGG);
    ``hidden=None``: each branch is one 3×3 atrous convolution to the scores (the ResNet-101 model)."""

    def __init__(self, in_channels: int, num_classes: int, rates, hidden=None, dropout: float = 0.5):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) if hidden is None
            else largefov_head(in_channels, num_classes, rate, hidden, dropout) for rate in rates)

    def forward(self, x):
        scores = [branch(x) for branch in self.branches]
        total = scores[0]
        for score in scores[1:]:
            total = total + score
        return total


class DeepLabV2(nn.Module):
    """DeepLab v2: ``backbone`` ("vgg16" or a ResNet name) at output stride 8 (or 16) and a ``SumASPP``
    at rates (6, 12, 18, 24) — (3, 6, 9, 12) at stride 16. The paper's best model is ResNet-101."""

    def __init__(self, num_classes: int, backbone: str = "resnet101", in_channels: int = 3, width: float = 1.0,
                 output_stride: int = 8, rates=None, allow_custom_rates: bool = False, dropout: float = 0.5):
        super().__init__()
        self.rates = atrous_rates("DeepLabV2", V2_RATES, output_stride, rates, allow_custom_rates)
        self.output_stride = output_stride
        if backbone == "vgg16":
            self.backbone = dilated_vgg16_features(width, in_channels, output_stride)
            self.aspp = SumASPP(self.backbone.stage_channels["pool5"], num_classes, self.rates,
                                scale_channels(1024, width), dropout)
        else:
            self.backbone = _resnet_backbone("DeepLabV2", backbone, width, in_channels, output_stride, None)
            self.aspp = SumASPP(self.backbone.out_channels, num_classes, self.rates)

    def forward(self, x):
        return bilinear_resize(self.aspp(self.backbone(x)), x.shape[-2:])


# ---------------------------------------------------------------------------------------- v3 / v3+ on ResNet
class ASPPPooling(nn.Sequential):
    """ASPP's image-level branch: global average → 1×1 conv → BN → ReLU, spread back over the map
    (bilinear resize of a 1×1 map, i.e. a constant): context from the whole image."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x):
        return bilinear_resize(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """DeepLab v3's ASPP (§7.4.3): a 1×1 branch, one 3×3 branch per atrous rate and ``ASPPPooling``, each
    with BN and ReLU (``convs``), concatenated and fused by a 1×1 conv → BN → ReLU → dropout (``project``).
    Names as torchvision's ``ASPP``."""

    def __init__(self, in_channels: int, out_channels: int, rates, dropout: float = 0.5):
        super().__init__()
        branches = [nn.Sequential(*_conv_bn_relu(in_channels, out_channels))]
        branches += [nn.Sequential(*_conv_bn_relu(in_channels, out_channels, 3, rate)) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out_channels, out_channels),
                                     nn.Dropout(dropout))

    def forward(self, x):
        return self.project(F.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3(nn.Module):
    """DeepLab v3: a ResNet ``backbone`` at ``output_stride`` 16 (or 8), ``aspp`` with 256w channels at
    rates (6, 12, 18) — (12, 24, 36) at stride 8 — and a 1×1 ``classifier``. The paper's encoder is
    ResNet-101 with ``multi_grid=(1, 2, 4)``; the default here (None) keeps torchvision's dilations and
    works with every depth (multi-grid needs one unit rate per layer4 block: 2 for ResNet-18)."""

    def __init__(self, num_classes: int, backbone: str = "resnet101", in_channels: int = 3, width: float = 1.0,
                 output_stride: int = 16, rates=None, multi_grid=None, allow_custom_rates: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        self.rates = atrous_rates(type(self).__name__, V3_RATES, output_stride, rates, allow_custom_rates)
        self.output_stride = output_stride
        self.backbone = _resnet_backbone(type(self).__name__, backbone, width, in_channels, output_stride, multi_grid)
        self.aspp = ASPP(self.backbone.out_channels, scale_channels(256, width), self.rates, dropout)
        self.classifier = nn.Conv2d(scale_channels(256, width), num_classes, 1)

    def forward(self, x):
        return bilinear_resize(self.classifier(self.aspp(self.backbone(x))), x.shape[-2:])


class SeparableConv2d(nn.Sequential):
    """Atrous separable convolution (§7.4.5): a depthwise 3×3 (``groups`` = channels, so each channel is
    filtered alone, at ``dilation``) then a pointwise 1×1 that mixes channels, each followed by BN and ReLU.
    It costs about 9·C + C·C' multiplications per pixel instead of a full 3×3's 9·C·C'."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__(OrderedDict([
            ("depthwise", nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation,
                                    groups=in_channels, bias=False)),
            ("depthwise_bn", nn.BatchNorm2d(in_channels)), ("depthwise_relu", nn.ReLU(inplace=True)),
            ("pointwise", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
            ("pointwise_bn", nn.BatchNorm2d(out_channels)), ("pointwise_relu", nn.ReLU(inplace=True))]))


class DeepLabV3Plus(DeepLabV3):
    """DeepLab v3+: DeepLab v3's encoder and ASPP, plus a decoder. The ``layer1`` features (stride 4) are
    reduced to 48w channels (``reduce``: 1×1 conv → BN → ReLU) and concatenated with the ASPP output
    resized to their size; ``refine`` (two ``SeparableConv2d`` with 256w channels) and the 1×1
    ``classifier`` then give scores at stride 4, resized to the input."""

    def __init__(self, num_classes: int, backbone: str = "resnet101", in_channels: int = 3, width: float = 1.0,
                 output_stride: int = 16, rates=None, multi_grid=None, allow_custom_rates: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes, backbone, in_channels, width, output_stride, rates, multi_grid,
                         allow_custom_rates, dropout)
        channels, low = scale_channels(256, width), scale_channels(48, width)
        self.reduce = nn.Sequential(*_conv_bn_relu(self.backbone.stage_channels["layer1"], low))
        self.refine = nn.Sequential(SeparableConv2d(channels + low, channels), SeparableConv2d(channels, channels))

    def forward(self, x):
        stages = self.backbone.feature_stages(x)
        low = self.reduce(stages["layer1"])
        context = bilinear_resize(self.aspp(stages["layer4"]), low.shape[-2:])
        return bilinear_resize(self.classifier(self.refine(F.cat([context, low], dim=1))), x.shape[-2:])
