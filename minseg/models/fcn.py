"""Fully convolutional networks (§7.2): ``convolutionalize`` a classifier, then FCN-32s, FCN-16s and FCN-8s.

**Convolutionalization (§7.2.1).** VGG's fc6 reads a 7×7×C map flattened in (C, H, W) order, so its weight
matrix (4096, C·7·7) *is* the weight of a 7×7 convolution with 4096 filters, only reshaped to
(4096, C, 7, 7); fc7 and fc8 read a vector and become 1×1 convolutions. On a 224×224 image the network
then returns a 1×1 map equal to the classifier's logits; on a larger image it slides the classifier over
the image with a stride of 32 and returns a map of class scores.

**FCN (§7.2.2)** follows the reference Caffe networks of Long, Shelhamer & Darrell exactly:

* conv1_1 is padded by **100** pixels and the max pools round their output size **up** (Caffe's pooling),
  so that every input size, however small, leaves a non-empty map after the 7×7 fc6 convolution;
* ``score_fr`` (1×1 on fc7), ``score_pool4`` and ``score_pool3`` (1×1 on the pools) give class scores and
  start at zero, as in the paper;
* ``upscore2`` and ``upscore_pool4`` are 2× transposed convolutions (kernel 4, stride 2, no bias), and the
  final ``upscore`` (×32, kernel 64), ``upscore16`` (×16, kernel 32) and ``upscore8`` (×8, kernel 16) are
  too; all start as bilinear interpolation (``nn.init.bilinear_upsampling_``) and are learnable (the
  paper kept the final one fixed: ``model.upscore8.requires_grad_(False)`` does that);
* maps are fused by addition after cropping the finer one.

**Crop offsets.** Write each map's pixel x as the image coordinate it is centred on, a·x + b: a 3×3/pad-1
conv keeps it, conv1_1 (pad 100) shifts it by −99, a 2×2 pool gives 2x + ½, fc6 (7×7, no padding) adds 3
map pixels and a transposed conv with kernel k and stride s maps y to (y − (k − 1)/2)/s. This gives
pool3 = 8x − 95.5, pool4 = 16x − 91.5, score_fr = 32x + 12.5, upscore2 = 16y − 11.5 and
upscore_pool4 = 8y − 23.5, hence:

* score_pool4 is cropped by **5** to align with upscore2 (16x − 91.5 = 16y − 11.5 ⇔ x = y + 5);
* score_pool3 is cropped by **9** to align with upscore_pool4;
* the final map is cropped by **19** (FCN-32s), **27** (FCN-16s) or **31** (FCN-8s): its pixel y is
  image pixel y − offset, so the output has exactly the input's height and width, for any size.

``minseg.models.receptive_field.receptive_field`` derives the same offsets from the layers (its ``start``).
Image pixels outside the outermost coarse pixels' centres — the first 13 rows and columns (score_fr's
pixel 0 is centred on image pixel 12.5) and, depending on the size, up to 12 of the last ones — have a
coarse neighbour on one side only: there the bilinear upsampling blends towards zero, so a constant score
map is not constant along those edges of the output. The reference networks behave the same way.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from .. import nn
from .backbones import init_weights, scale_channels, vgg16_features

PAPER_PADDING = 100  # conv1_1's padding in the reference networks


def convolutionalize(vgg) -> nn.Sequential:
    """A fully convolutional copy of ``vgg`` (§7.2.1): ``Sequential(features, classifier)`` in which the
    classifier's first ``Linear`` is a k×k convolution (k×k being the map it reads, 7×7 for VGG) and the
    others are 1×1 convolutions, holding the same weights; ReLU and dropout are kept and ``avgpool``
    dropped (it is the identity on the 7×7 map of a 224×224 image).

    In eval mode the copy's 1×1 output on a 224×224 image equals ``vgg``'s logits; a larger image gives a
    map of scores, one per 32-pixel step. The copy shares nothing with ``vgg`` (weights are copied).
    """
    features = copy.deepcopy(vgg.features)
    channels = [layer for layer in features.modules() if isinstance(layer, nn.Conv2d)][-1].out_channels
    layers, first = [], True
    for layer in vgg.classifier:
        if not isinstance(layer, nn.Linear):
            layers.append(copy.deepcopy(layer))
            continue
        in_channels = channels if first else layer.in_features
        side = round((layer.in_features / in_channels) ** 0.5)  # 7 for fc6, 1 after it
        if in_channels * side * side != layer.in_features:
            raise ValueError(f"convolutionalize: {layer.in_features} input features are not {in_channels} channels "
                             f"of a square map")
        conv = nn.Conv2d(in_channels, layer.out_features, side, bias=layer.bias is not None)
        conv.weight.data = layer.weight.data.reshape(conv.weight.shape).copy()  # (out, C·k·k) → (out, C, k, k)
        if layer.bias is not None:
            conv.bias.data = layer.bias.data.copy()
        layers.append(conv)
        first = False
    return nn.Sequential(OrderedDict([("features", features), ("classifier", nn.Sequential(*layers))]))


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A ×``factor`` transposed conv (kernel 2·factor, stride factor, no padding, no bias) that starts as
    bilinear interpolation, channel by channel; it maps n pixels to factor·(n + 1) (FCN's ``upscore``)."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    nn.init.bilinear_upsampling_(layer.weight)
    return layer


def _score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1×1 class-score convolution, zero-initialised as in the paper."""
    layer = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _crop(x, offset: int, size):
    """``x[..., offset : offset + h, offset : offset + w]``: drop ``offset`` rows/columns at the top/left."""
    h, w = size
    return x[:, :, offset:offset + h, offset:offset + w]


class _FCN(nn.Module):
    """What the three FCNs share: the VGG-16 convolutions (``features``, a ``VGGFeatures`` with torchvision's
    indices, conv1_1 padded by 100, pools rounding up; ``encode`` taps its pools by name), fc6/fc7 as convolutions (``classifier``, keys as ``convolutionalize``'s) and
    ``score_fr``. ``width`` scales every channel count as in ``vgg16``."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.features = vgg16_features(width, in_channels, batch_norm)
        self.features[0].padding = (PAPER_PADDING, PAPER_PADDING)
        for index in self.features.pool_indices:
            self.features[index].ceil_mode = True
        self.stage_channels = self.features.stage_channels  # the channels of the pool3 and pool4 skips
        hidden = scale_channels(4096, width)
        self.classifier = nn.Sequential(nn.Conv2d(self.stage_channels["pool5"], hidden, 7), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout), nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout))
        init_weights(self.classifier)
        self.score_fr = _score_layer(hidden, num_classes)

    def load_vgg(self, vgg) -> None:
        """Start from a trained ``VGG`` of the same width, as the paper does: copy its convolutions and its
        fc6/fc7, convolutionalized; fc8 (ImageNet's classes) is dropped and the score layers stay as they are."""
        state = convolutionalize(vgg).state_dict()
        self.load_state_dict({key: value for key, value in state.items() if not key.startswith("classifier.6.")},
                             strict=False)

    def encode(self, x):
        """(pool3, pool4, class scores at stride 32): the three maps that the decoders fuse."""
        stages = self.features.stages(x)
        return stages["pool3"], stages["pool4"], self.score_fr(self.classifier(stages["pool5"]))

    def _add_pool4_skip(self) -> None:
        """FCN-16s's and FCN-8s's first fusion: ``upscore2`` (scores ×2) and ``score_pool4``."""
        self.upscore2 = bilinear_upsampling(self.num_classes, 2)
        self.score_pool4 = _score_layer(self.stage_channels["pool4"], self.num_classes)

    def _fuse_pool4(self, score, pool4):
        """Scores ×2 plus pool4's scores cropped by 5: the stride-16 map of FCN-16s and FCN-8s."""
        upscore2 = self.upscore2(score)
        return upscore2 + _crop(self.score_pool4(pool4), 5, upscore2.shape[-2:])

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class FCN32s(_FCN):
    """FCN-32s: class scores at stride 32, upsampled ×32 in one step (``upscore``) and cropped by 19."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes, width, in_channels, batch_norm, dropout)
        self.upscore = bilinear_upsampling(num_classes, 32)

    def forward(self, x):
        _, _, score = self.encode(x)
        return _crop(self.upscore(score), 19, x.shape[-2:])


class FCN16s(_FCN):
    """FCN-16s: scores ×2 (``upscore2``) + pool4's scores (cropped by 5), then ×16 (``upscore16``), cropped by 27."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes, width, in_channels, batch_norm, dropout)
        self._add_pool4_skip()
        self.upscore16 = bilinear_upsampling(num_classes, 16)

    def forward(self, x):
        _, pool4, score = self.encode(x)
        return _crop(self.upscore16(self._fuse_pool4(score, pool4)), 27, x.shape[-2:])


class FCN8s(_FCN):
    """FCN-8s: FCN-16s's fused map ×2 (``upscore_pool4``) + pool3's scores (cropped by 9), then ×8
    (``upscore8``), cropped by 31."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes, width, in_channels, batch_norm, dropout)
        self._add_pool4_skip()
        self.upscore_pool4 = bilinear_upsampling(num_classes, 2)
        self.score_pool3 = _score_layer(self.stage_channels["pool3"], num_classes)
        self.upscore8 = bilinear_upsampling(num_classes, 8)

    def forward(self, x):
        pool3, pool4, score = self.encode(x)
        upscore_pool4 = self.upscore_pool4(self._fuse_pool4(score, pool4))
        fuse_pool3 = upscore_pool4 + _crop(self.score_pool3(pool3), 9, upscore_pool4.shape[-2:])
        return _crop(self.upscore8(fuse_pool3), 31, x.shape[-2:])
