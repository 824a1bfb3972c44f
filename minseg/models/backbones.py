"""Classification backbones that the segmentation models are built on: VGG-16 and ResNet-18/34/50/101.

Both follow torchvision's module structure, so their ``state_dict`` keys are torchvision's and its
ImageNet checkpoints (converted to arrays) load with ``load_state_dict``.

* **VGG-16** keeps its classifier as three ``Linear`` layers (fc6, fc7, fc8) so that FCN can turn them
  into convolutions (§7.2.1): fc6 reads the 7×7×512 map that ``avgpool`` produces.
* **ResNet** trades its last strides for dilation to reach an output stride of 16 or 8 (§7.4.2), exactly
  as torchvision's ``replace_stride_with_dilation``, and adds DeepLab v3's multi-grid (§7.4.5).

``width`` scales every channel count (``scale_channels``) so that the networks train on a CPU;
``width=1`` is the papers' network.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def scale_channels(channels: int, width: float) -> int:
    """``channels · width`` rounded half up, at least 1 (e.g. 64·0.125 = 8, 48·0.1 = 4.8 → 5, 64·0.001 → 1)."""
    if width <= 0:
        raise ValueError(f"width must be positive; got width={width!r}")
    return max(1, int(channels * width + 0.5))


def init_weights(module: nn.Module) -> None:
    """torchvision's initialisation for VGG and ResNet: convolutions He-normal over fan_out with zero bias,
    batch norm γ = 1 and β = 0, linear layers N(0, 0.01²) with zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


# ---------------------------------------------------------------------------------------------- VGG
class VGGFeatures(nn.Sequential):
    """VGG-16's convolutional part: a ``Sequential`` with torchvision's indices and keys that also knows its
    five max pools, so the models built on it tap them by name (FCN's pool3/pool4 skips, §7.2.2)."""

    @property
    def pool_indices(self) -> tuple:
        """Where the max pools sit: (4, 9, 16, 23, 30) without batch norm, as in torchvision."""
        return tuple(i for i, layer in enumerate(self) if isinstance(layer, nn.MaxPool2d))

    @property
    def stage_channels(self) -> "OrderedDict[str, int]":
        """``{"pool1": 64w, "pool2": 128w, "pool3": 256w, "pool4": 512w, "pool5": 512w}``: each pool's channels."""
        channels, out = OrderedDict(), None
        for layer in self:
            if isinstance(layer, nn.Conv2d):
                out = layer.out_channels
            elif isinstance(layer, nn.MaxPool2d):
                channels[f"pool{len(channels) + 1}"] = out
        return channels

    def stages(self, x) -> "OrderedDict[str, object]":
        """``{"pool1": …, …, "pool5": …}``: the features after each max pool (strides 2 … 32 unless dilated)."""
        stages = OrderedDict()
        for layer in self:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                stages[f"pool{len(stages) + 1}"] = x
        return stages


def vgg16_features(width: float = 1.0, in_channels: int = 3, batch_norm: bool = False) -> VGGFeatures:
    """VGG-16's convolutional part (torchvision's ``make_layers``): 13 3×3 convolutions with padding 1, each
    followed by ReLU (batch norm before it with ``batch_norm``), and a 2×2/stride-2 max pool after each of
    the five blocks; initialised by ``init_weights``."""
    layers, channels = [], in_channels
    for entry in VGG16_LAYERS:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = scale_channels(entry, width)
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    features = VGGFeatures(*layers)
    init_weights(features)
    return features


class VGG(nn.Module):
    """VGG-16 (configuration D of Simonyan & Zisserman) with torchvision's layout.

    ``features`` is one ``Sequential`` of 3×3 convolutions (padding 1), ReLUs (and batch norms with
    ``batch_norm=True``) and five 2×2/stride-2 max pools at ``pool_indices`` — (4, 9, 16, 23, 30) without
    batch norm, as torchvision. ``avgpool`` brings any map to 7×7, and ``classifier`` is fc6
    (512w·7·7 → 4096w), fc7 (4096w → 4096w) and fc8 (→ ``num_classes``), with ReLU and dropout between them:
    the fully-connected layers that FCN convolutionalizes (§7.2.1).

    ``feature_stages(x)`` returns the output of every pool (``pool3``, ``pool4``, ``pool5`` feed FCN's skips).
    """

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                 batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        self.features = vgg16_features(width, in_channels, batch_norm)
        self.pool_indices = self.features.pool_indices
        channels = self.out_channels = scale_channels(512, width)
        hidden = scale_channels(4096, width)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))
        init_weights(self.classifier)

    def feature_stages(self, x) -> "OrderedDict[str, object]":
        """``{"pool1": …, …, "pool5": …}``: the features after each max pool, at strides 2, 4, 8, 16, 32."""
        return self.features.stages(x)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def vgg16(num_classes: int = 1000, width: float = 1.0, in_channels: int = 3, batch_norm: bool = False,
          dropout: float = 0.5) -> VGG:
    """VGG-16 with torchvision's ``state_dict`` keys (``vgg16`` or, with ``batch_norm=True``, ``vgg16_bn``);
    channel counts 64w, 128w, 256w, 512w and 4096w rounded by ``scale_channels``."""
    return VGG(num_classes, width, in_channels, batch_norm, dropout)


# ---------------------------------------------------------------------------------------------- ResNet
def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution whose padding equals its dilation, so stride 1 keeps the size (§7.4.2)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN pairs plus the identity (or ``downsample``d) input, then ReLU (ResNet-18/34).

    torchvision refuses dilation here; we dilate both 3×3 convolutions so that ResNet-18/34 can also
    serve DeepLab at output stride 16 or 8."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample=None, dilation: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride, self.dilation = stride, dilation

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carrying the stride and the dilation) → 1×1 expand by 4, each followed by BN,
    plus the identity, then ReLU (ResNet-50; torchvision's "v1.5" with the stride on the 3×3)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample=None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride, self.dilation = stride, dilation

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def stage_dilations(blocks: int, previous: int, dilation: int, multi_grid=None) -> list:
    """The dilation of each of the ``blocks`` blocks of a stage run at ``dilation`` after a stage at ``previous``.

    Without ``multi_grid`` this is torchvision's rule: the first block still uses the previous stage's
    dilation and the others the new one, e.g. [1, 2, 2] for layer4 at output stride 16. With DeepLab v3's
    multi-grid, every block — the first included — uses the stage's rate times its unit rate: at output
    stride 16, ``multi_grid=(1, 2, 4)`` gives 2·(1, 2, 4) = [2, 4, 8] (§7.4.5).
    """
    if multi_grid is None:
        return [previous] + [dilation] * (blocks - 1)
    if len(multi_grid) != blocks:
        raise ValueError(f"multi_grid={tuple(multi_grid)} needs one unit rate per block of the last stage, "
                         f"which has {blocks} blocks")
    return [dilation * unit for unit in multi_grid]


class ResNet(nn.Module):
    """ResNet with torchvision's names — ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``…``layer4``
    and, when ``num_classes`` is given, ``avgpool`` and ``fc`` — so torchvision checkpoints load.

    ``output_stride`` (32, 16 or 8) is how much smaller than the input the layer4 features are. For 16,
    layer4's stride 2 becomes stride 1 with dilation 2; for 8, layer3 gets dilation 2 and layer4
    dilation 4 instead (torchvision's ``replace_stride_with_dilation``, §7.4.2): the receptive field
    keeps growing while the resolution stops shrinking. ``multi_grid`` sets layer4's unit rates
    (``stage_dilations``).

    ``forward(x)`` returns the layer4 features (or class logits with ``num_classes``);
    ``feature_stages(x)`` returns every stage's output, including DeepLab v3+'s low-level ``layer1``
    features at stride 4.
    """

    def __init__(self, block, layers, width: float = 1.0, in_channels: int = 3, output_stride: int = 32,
                 multi_grid=None, num_classes=None):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"ResNet: output_stride must be 8, 16 or 32; got {output_stride!r}")
        dilate = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}[output_stride]
        self.output_stride = output_stride
        self.in_planes, self.dilation = scale_channels(64, width), 1
        self.conv1 = nn.Conv2d(in_channels, self.in_planes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage_channels = OrderedDict()
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride, dilated = (1, False) if index == 0 else (2, dilate[index - 1])
            grid = multi_grid if index == 3 else None
            name = f"layer{index + 1}"
            setattr(self, name, self._make_layer(block, scale_channels(planes, width), blocks, stride, dilated, grid))
            self.stage_channels[name] = self.in_planes
        self.out_channels, self.num_classes = self.in_planes, num_classes
        init_weights(self)
        if num_classes is not None:  # created after init_weights: torchvision keeps Linear's default init for fc
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(self.out_channels, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, dilated: bool, multi_grid):
        previous = self.dilation
        if dilated:
            self.dilation *= stride
            stride = 1
        downsample, out = None, planes * block.expansion
        if stride != 1 or self.in_planes != out:
            downsample = nn.Sequential(nn.Conv2d(self.in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        dilations = stage_dilations(blocks, previous, self.dilation, multi_grid)
        units = [block(self.in_planes, planes, stride, downsample, dilations[0])]
        self.in_planes = out
        units += [block(self.in_planes, planes, dilation=rate) for rate in dilations[1:]]
        return nn.Sequential(*units)

    def feature_stages(self, x) -> "OrderedDict[str, object]":
        """``{"layer1": …, …, "layer4": …}``: layer1 is at stride 4, layer4 at ``output_stride``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        stages = OrderedDict()
        for name in self.stage_channels:
            x = getattr(self, name)(x)
            stages[name] = x
        return stages

    def forward(self, x):
        x = self.feature_stages(x)["layer4"]
        if self.num_classes is None:
            return x
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(width: float = 1.0, in_channels: int = 3, output_stride: int = 32, multi_grid=None,
             num_classes=None) -> ResNet:
    """ResNet-18: BasicBlocks [2, 2, 2, 2], layer4 with 512w channels."""
    return ResNet(BasicBlock, (2, 2, 2, 2), width, in_channels, output_stride, multi_grid, num_classes)


def resnet34(width: float = 1.0, in_channels: int = 3, output_stride: int = 32, multi_grid=None,
             num_classes=None) -> ResNet:
    """ResNet-34: BasicBlocks [3, 4, 6, 3], layer4 with 512w channels."""
    return ResNet(BasicBlock, (3, 4, 6, 3), width, in_channels, output_stride, multi_grid, num_classes)


def resnet50(width: float = 1.0, in_channels: int = 3, output_stride: int = 32, multi_grid=None,
             num_classes=None) -> ResNet:
    """ResNet-50: Bottlenecks [3, 4, 6, 3], layer4 with 4·512w = 2048w channels."""
    return ResNet(Bottleneck, (3, 4, 6, 3), width, in_channels, output_stride, multi_grid, num_classes)


def resnet101(width: float = 1.0, in_channels: int = 3, output_stride: int = 32, multi_grid=None,
              num_classes=None) -> ResNet:
    """ResNet-101, DeepLab v2/v3's encoder: Bottlenecks [3, 4, 23, 3], layer4 with 2048w channels."""
    return ResNet(Bottleneck, (3, 4, 23, 3), width, in_channels, output_stride, multi_grid, num_classes)
