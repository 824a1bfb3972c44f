"""Plain PyTorch re-implementations of minseg's models, written the way a PyTorch user would (backbones in
torchvision's layout, so the tests need no torchvision). ``model_helpers.check_model`` compares a minseg
model with its twin; ``benchmarks/bench_models.py`` times the two.
"""

from collections import OrderedDict

import torch
import torch.nn as tnn
import torch.nn.functional as TF


def width_of(channels, width):
    return max(1, int(channels * width + 0.5))


# ---------------------------------------------------------------------------------------------- VGG
def torch_vgg16_features(width=1.0, in_channels=3, batch_norm=False):
    layers, channels = [], in_channels
    for block, (planes, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        for _ in range(convs):
            out = width_of(planes, width)
            layers.append(tnn.Conv2d(channels, out, 3, padding=1))
            if batch_norm:
                layers.append(tnn.BatchNorm2d(out))
            layers.append(tnn.ReLU())
            channels = out
        layers.append(tnn.MaxPool2d(2, 2))
    return tnn.Sequential(*layers)


class TorchVGG(tnn.Module):
    def __init__(self, num_classes=1000, width=1.0, in_channels=3, batch_norm=False, dropout=0.5):
        super().__init__()
        self.features = torch_vgg16_features(width, in_channels, batch_norm)
        channels, hidden = width_of(512, width), width_of(4096, width)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(
            tnn.Linear(channels * 49, hidden), tnn.ReLU(), tnn.Dropout(dropout),
            tnn.Linear(hidden, hidden), tnn.ReLU(), tnn.Dropout(dropout), tnn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---------------------------------------------------------------------------------------------- ResNet
class TorchBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(tnn.Module):
    """torchvision's ResNet with ``replace_stride_with_dilation``; ``multi_grid`` sets layer4's rates to
    (its dilation)·(unit rates), the first block included, as the DeepLab v3 paper describes."""

    def __init__(self, block, layers, width=1.0, in_channels=3, replace_stride_with_dilation=(False, False, False),
                 multi_grid=None, num_classes=None):
        super().__init__()
        self.inplanes, self.dilation = width_of(64, width), 1
        self.conv1 = tnn.Conv2d(in_channels, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(self.inplanes)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width_of(64, width), layers[0])
        self.layer2 = self._make_layer(block, width_of(128, width), layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, width_of(256, width), layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, width_of(512, width), layers[3], 2, replace_stride_with_dilation[2],
                                       multi_grid)
        if num_classes is not None:
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(self.inplanes, num_classes)
        self.num_classes = num_classes

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False, multi_grid=None):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                        tnn.BatchNorm2d(planes * block.expansion))
        rates = [previous_dilation] + [self.dilation] * (blocks - 1)
        if multi_grid is not None:
            rates = [self.dilation * unit for unit in multi_grid]
        layers = [block(self.inplanes, planes, stride, downsample, rates[0])]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=rates[i]))
        return tnn.Sequential(*layers)

    def stages(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))

    def forward(self, x):
        x = self.stages(x)[1]
        if self.num_classes is None:
            return x
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNET_SPECS = {"resnet18": (TorchBasicBlock, (2, 2, 2, 2)), "resnet34": (TorchBasicBlock, (3, 4, 6, 3)),
                "resnet50": (TorchBottleneck, (3, 4, 6, 3)), "resnet101": (TorchBottleneck, (3, 4, 23, 3))}
DILATE = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


def torch_resnet(name, width=1.0, in_channels=3, output_stride=32, multi_grid=None, num_classes=None):
    block, layers = RESNET_SPECS[name]
    return TorchResNet(block, layers, width, in_channels, DILATE[output_stride], multi_grid, num_classes)


# ---------------------------------------------------------------------------------------------- U-Net
def torch_double_conv(c_in, c_out, padding, batch_norm):
    layers = []
    for channels in (c_in, c_out):
        layers += [tnn.Conv2d(channels, c_out, 3, padding=padding, bias=not batch_norm)]
        layers += [tnn.BatchNorm2d(c_out)] if batch_norm else []
        layers += [tnn.ReLU()]
    return tnn.Sequential(*layers)


class TorchUNet(tnn.Module):
    """The reference: the same network, written the way a PyTorch user would."""

    def __init__(self, in_channels, num_classes, base, depth, padding, up, batch_norm):
        super().__init__()
        pad = 1 if padding == "same" else 0
        widths = [base * 2**level for level in range(depth + 1)]
        self.encoder = tnn.ModuleList(torch_double_conv(a, b, pad, batch_norm)
                                      for a, b in zip([in_channels] + widths[:-2], widths[:-1]))
        self.pool = tnn.MaxPool2d(2)
        self.bottleneck = torch_double_conv(widths[-2], widths[-1], pad, batch_norm)
        self.up, self.decoder = tnn.ModuleList(), tnn.ModuleList()
        for level in reversed(range(depth)):
            if up == "transpose":
                self.up.append(tnn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            else:
                self.up.append(tnn.Sequential(tnn.Upsample(scale_factor=2, mode="bilinear"),
                                              tnn.Conv2d(widths[level + 1], widths[level], 3, padding=1)))
            self.decoder.append(torch_double_conv(2 * widths[level], widths[level], pad, batch_norm))
        self.head = tnn.Conv2d(base, num_classes, 1)

    def forward(self, x):
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = up(x)
            top, left = (skip.shape[2] - x.shape[2]) // 2, (skip.shape[3] - x.shape[3]) // 2
            skip = skip[:, :, top:top + x.shape[2], left:left + x.shape[3]]
            x = block(torch.cat([skip, x], 1))
        return self.head(x)


# ---------------------------------------------------------------------------------------------- DeepLab v3/v3+
def upsample(x, size):
    return TF.interpolate(x, size=size, mode="bilinear", align_corners=False)


def conv_bn_relu(cin, cout, k=1, rate=1):
    return [tnn.Conv2d(cin, cout, k, padding=rate * (k // 2), dilation=rate, bias=False), tnn.BatchNorm2d(cout),
            tnn.ReLU()]


class TorchPooling(tnn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(tnn.AdaptiveAvgPool2d(1), *conv_bn_relu(cin, cout))

    def forward(self, x):
        return upsample(super().forward(x), x.shape[-2:])


class TorchASPP(tnn.Module):
    def __init__(self, cin, cout, rates, dropout):
        super().__init__()
        self.convs = tnn.ModuleList([tnn.Sequential(*conv_bn_relu(cin, cout))]
                                    + [tnn.Sequential(*conv_bn_relu(cin, cout, 3, r)) for r in rates]
                                    + [TorchPooling(cin, cout)])
        self.project = tnn.Sequential(*conv_bn_relu(cout * (len(rates) + 2), cout), tnn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class TorchDeepLabV3(tnn.Module):
    def __init__(self, classes, backbone, width, output_stride, multi_grid, dropout, rates=None):
        super().__init__()
        self.backbone = torch_resnet(backbone, width, output_stride=output_stride, multi_grid=multi_grid)
        rates = rates or ((6, 12, 18) if output_stride == 16 else (12, 24, 36))
        self.aspp = TorchASPP(self.backbone.inplanes, width_of(256, width), rates, dropout)
        self.classifier = tnn.Conv2d(width_of(256, width), classes, 1)

    def forward(self, x):
        return upsample(self.classifier(self.aspp(self.backbone(x))), x.shape[-2:])


def torch_separable(cin, cout):
    return tnn.Sequential(OrderedDict([
        ("depthwise", tnn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)),
        ("depthwise_bn", tnn.BatchNorm2d(cin)), ("depthwise_relu", tnn.ReLU()),
        ("pointwise", tnn.Conv2d(cin, cout, 1, bias=False)), ("pointwise_bn", tnn.BatchNorm2d(cout)),
        ("pointwise_relu", tnn.ReLU())]))


class TorchDeepLabV3Plus(TorchDeepLabV3):
    def __init__(self, classes, backbone, width, output_stride, multi_grid, dropout, rates=None):
        super().__init__(classes, backbone, width, output_stride, multi_grid, dropout, rates)
        channels, low = width_of(256, width), width_of(48, width)
        self.reduce = tnn.Sequential(*conv_bn_relu(self.backbone.layer1[-1].bn2.num_features
                                                   if backbone in ("resnet18", "resnet34")
                                                   else self.backbone.layer1[-1].bn3.num_features, low))
        self.refine = tnn.Sequential(torch_separable(channels + low, channels), torch_separable(channels, channels))

    def forward(self, x):
        layer1, layer4 = self.backbone.stages(x)
        low = self.reduce(layer1)
        context = upsample(self.aspp(layer4), low.shape[-2:])
        return upsample(self.classifier(self.refine(torch.cat([context, low], 1))), x.shape[-2:])
