"""DeepLab v1/v2/v3/v3+ (minseg.models.deeplab) against plain PyTorch twins written below.

Small widths and odd input sizes in float64: same outputs, parameter gradients and batch-norm statistics
in training mode (dropout off) and eval mode; logits come back at the input's size; the backbone keeps
1/output_stride of the input; atrous rates that do not follow the output stride are refused.
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as tnn

import minseg
from minseg.models import ASPP, DeepLabV1, DeepLabV2, DeepLabV3, DeepLabV3Plus
from minseg.models.deeplab import dilated_vgg16_features
from model_helpers import check_model
from model_twins import TorchDeepLabV3, TorchDeepLabV3Plus, torch_resnet, torch_vgg16_features, upsample, width_of

WIDTH = 0.125


def image(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------------------------- torch twins
def torch_dilated_vgg(width, output_stride):
    """VGG-16 features with DeepLab's 3×3/pad-1 pools; pools past ``output_stride`` at stride 1 and the convs
    after them dilated: at stride 8, conv5 at rate 2; at 16, nothing dilated (only pool5 keeps stride 1)."""
    layers = list(torch_vgg16_features(width))
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, tnn.MaxPool2d)]
    strided = int(math.log2(output_stride))
    for number, index in enumerate(pools):
        layers[index] = tnn.MaxPool2d(3, 2 if number < strided else 1, 1)
    if output_stride == 8:
        for layer in layers[pools[3]:]:
            if isinstance(layer, tnn.Conv2d):
                layer.dilation, layer.padding = (2, 2), (2, 2)
    return tnn.Sequential(*layers)


def torch_largefov(in_channels, classes, rate, hidden, dropout):
    return tnn.Sequential(OrderedDict([
        ("fc6", tnn.Conv2d(in_channels, hidden, 3, padding=rate, dilation=rate)), ("relu6", tnn.ReLU()),
        ("drop6", tnn.Dropout(dropout)), ("fc7", tnn.Conv2d(hidden, hidden, 1)), ("relu7", tnn.ReLU()),
        ("drop7", tnn.Dropout(dropout)), ("fc8", tnn.Conv2d(hidden, classes, 1))]))


class TorchDeepLabV1(tnn.Module):
    def __init__(self, classes, width, output_stride, dropout, rate=None):
        super().__init__()
        self.backbone = torch_dilated_vgg(width, output_stride)
        rate = rate or 12 * 8 // output_stride
        self.head = torch_largefov(width_of(512, width), classes, rate, width_of(1024, width), dropout)

    def forward(self, x):
        return upsample(self.head(self.backbone(x)), x.shape[-2:])


class TorchSumASPP(tnn.Module):
    def __init__(self, in_channels, classes, rates, hidden, dropout):
        super().__init__()
        self.branches = tnn.ModuleList(
            tnn.Conv2d(in_channels, classes, 3, padding=r, dilation=r) if hidden is None
            else torch_largefov(in_channels, classes, r, hidden, dropout) for r in rates)

    def forward(self, x):
        return sum(branch(x) for branch in self.branches)


class TorchDeepLabV2(tnn.Module):
    def __init__(self, classes, backbone, width, output_stride, dropout, rates=None):
        super().__init__()
        rates = rates or [r * 8 // output_stride for r in (6, 12, 18, 24)]
        if backbone == "vgg16":
            self.backbone = torch_dilated_vgg(width, output_stride)
            self.aspp = TorchSumASPP(width_of(512, width), classes, rates, width_of(1024, width), dropout)
        else:
            self.backbone = torch_resnet(backbone, width, output_stride=output_stride)
            self.aspp = TorchSumASPP(self.backbone.inplanes, classes, rates, None, dropout)

    def forward(self, x):
        return upsample(self.aspp(self.backbone(x)), x.shape[-2:])


# ---------------------------------------------------------------------------------------------- comparisons
# An atrous tap more than the map's size from the centre only reads padding, so the paper's rates are
# exercised on inputs large enough for them (fc6 rate 12 at stride 8 needs > 13 feature pixels, i.e. > 104
# input pixels; ASPP rate 18 at stride 16 > 288); the smaller cases use small custom rates instead.
MODEL_CASES = [
    ("v1", dict(output_stride=8), (113, 107)),
    ("v1", dict(output_stride=16, rate=2, allow_custom_rates=True), (37, 35)),
    ("v2", dict(backbone="vgg16", output_stride=8, rates=(1, 2, 3, 4), allow_custom_rates=True), (37, 35)),
    ("v2", dict(backbone="resnet18", output_stride=8), (209, 201)),
    ("v3", dict(backbone="resnet18", output_stride=16, multi_grid=None), (305, 297)),
    ("v3", dict(backbone="resnet50", output_stride=8, multi_grid=(1, 2, 4), rates=(1, 2, 3), allow_custom_rates=True),
     (37, 35)),
    ("v3+", dict(backbone="resnet18", output_stride=16, multi_grid=(1, 2), rates=(2, 1), allow_custom_rates=True),
     (37, 35)),
    ("v3+", dict(backbone="resnet50", output_stride=8, multi_grid=None), (37, 35)),
]
OURS = {"v1": DeepLabV1, "v2": DeepLabV2, "v3": DeepLabV3, "v3+": DeepLabV3Plus}
THEIRS = {"v1": TorchDeepLabV1, "v2": TorchDeepLabV2, "v3": TorchDeepLabV3, "v3+": TorchDeepLabV3Plus}


def twins(version, classes=3, dropout=0.0, **kwargs):
    torch.manual_seed(0)
    twin_kwargs = {key: value for key, value in kwargs.items() if key != "allow_custom_rates"}
    theirs = THEIRS[version](classes, width=WIDTH, dropout=dropout, **twin_kwargs)
    return OURS[version](classes, width=WIDTH, dropout=dropout, **kwargs), theirs


@pytest.mark.parametrize("version, kwargs, size", MODEL_CASES, ids=lambda case: str(case))
def test_deeplab_matches_torch_in_train_and_eval_mode(version, kwargs, size, device):
    ours, theirs = twins(version, **kwargs)
    out = check_model(ours, theirs, image(2, 3, *size), device)
    assert out.shape == (2, 3) + size


@pytest.mark.parametrize("version, kwargs", [case[:2] for case in MODEL_CASES[::2]], ids=lambda case: str(case))
@pytest.mark.parametrize("size", [(33, 47), (50, 21), (17, 17)])
def test_logits_have_the_input_size(version, kwargs, size, device):
    model = OURS[version](4, width=0.0625, in_channels=1, **kwargs).to(device).eval()
    with minseg.no_grad():
        out = model(minseg.Tensor(minseg.to_device(image(1, 1, *size), device)))
    assert out.shape == (1, 4) + size and out.device == device


@pytest.mark.parametrize("output_stride", [8, 16])
def test_encoder_features_are_one_output_stride_of_the_input(output_stride, device):
    x = minseg.Tensor(minseg.to_device(image(1, 3, 64, 96), device))
    with minseg.no_grad():
        vgg = DeepLabV1(2, width=0.0625, output_stride=output_stride).to(device).eval()
        assert vgg.backbone(x).shape[2:] == (64 // output_stride, 96 // output_stride)
        plus = DeepLabV3Plus(2, "resnet18", width=0.0625, output_stride=output_stride).to(device).eval()
        stages = plus.backbone.feature_stages(x)
    assert stages["layer1"].shape[2:] == (16, 24)
    assert stages["layer4"].shape[2:] == (64 // output_stride, 96 // output_stride)


def test_dilated_vgg_replaces_the_last_pools_and_dilates_conv5():
    features = dilated_vgg16_features(width=0.0625, output_stride=8)
    pools = [layer for layer in features if isinstance(layer, minseg.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    rates = [layer.dilation[0] for layer in features if isinstance(layer, minseg.nn.Conv2d)]
    assert rates == [1] * 10 + [2] * 3
    assert list(features.state_dict()) == list(torch_vgg16_features(0.0625).state_dict())


# ---------------------------------------------------------------------------------------------- rates
def _aspp_rates(aspp):
    return [branch[0].dilation[0] for branch in list(aspp.convs)[1:-1]]


def test_rates_follow_output_stride_by_default():
    assert _aspp_rates(DeepLabV3(2, "resnet18", width=0.0625).aspp) == [6, 12, 18]
    assert _aspp_rates(DeepLabV3Plus(2, "resnet18", width=0.0625, output_stride=8).aspp) == [12, 24, 36]
    assert DeepLabV2(2, "resnet18", width=0.0625).rates == (6, 12, 18, 24)
    assert DeepLabV2(2, "resnet18", width=0.0625, output_stride=16).rates == (3, 6, 9, 12)
    assert DeepLabV1(2, width=0.0625).head.fc6.dilation == (12, 12)


@pytest.mark.parametrize("model, kwargs", [
    (DeepLabV3, dict(output_stride=8, rates=(6, 12, 18))),
    (DeepLabV3Plus, dict(output_stride=16, rates=[12, 24, 36])),
    (DeepLabV2, dict(output_stride=16, rates=(6, 12, 18, 24))),
    (DeepLabV1, dict(output_stride=16, rate=12)),
])
def test_rates_inconsistent_with_output_stride_are_refused(model, kwargs):
    with pytest.raises(ValueError, match=r"do not match output_stride=\d+ — those are the rates for output_stride"):
        model(2, width=0.0625, **kwargs)
    custom = model(2, width=0.0625, allow_custom_rates=True, **kwargs)
    assert custom.output_stride == kwargs["output_stride"]


def test_custom_rates_need_the_override_and_are_used():
    with pytest.raises(ValueError, match="allow_custom_rates=True"):
        DeepLabV3(2, "resnet18", width=0.0625, rates=(3, 5))
    model = DeepLabV3(2, "resnet18", width=0.0625, rates=(3, 5), allow_custom_rates=True)
    assert _aspp_rates(model.aspp) == [3, 5] and len(model.aspp.convs) == 4
    assert isinstance(model.aspp, ASPP)


@pytest.mark.parametrize("model, kwargs, message", [
    (DeepLabV3, dict(output_stride=32), "output_stride must be one of"),
    (DeepLabV1, dict(output_stride=4), "output_stride must be one of"),
    (DeepLabV3, dict(rates=(6, 0, 18), allow_custom_rates=True), "positive ints"),
    (DeepLabV3, dict(backbone="vgg16"), "backbone must be one of"),
    (DeepLabV2, dict(backbone="resnet7"), "backbone must be one of"),
])
def test_invalid_settings_raise(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(2, width=0.0625, **kwargs)
