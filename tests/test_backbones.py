"""VGG-16 and ResNet (minseg.models.backbones) against plain PyTorch twins with torchvision's layout.

Small widths and inputs in float64: outputs, parameter gradients and batch-norm statistics must agree in
training and eval mode, the state_dict keys must be the twin's (hence torchvision's), and output stride
8/16/32 must give the expected feature sizes and dilations.
"""

import math

import numpy as np
import pytest
import torch

import minseg
from minseg.models import BasicBlock, Bottleneck, resnet18, resnet34, resnet50, resnet101, vgg16
from minseg.models.backbones import scale_channels, stage_dilations
from model_helpers import assert_close_scaled, check_model
from model_twins import TorchVGG, torch_resnet

RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}


def image(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------------------------- VGG
@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg16_matches_torch_in_train_and_eval_mode(batch_norm, device):
    torch.manual_seed(0)
    ours = vgg16(num_classes=5, width=0.125, in_channels=2, batch_norm=batch_norm, dropout=0.0)
    theirs = TorchVGG(num_classes=5, width=0.125, in_channels=2, batch_norm=batch_norm, dropout=0.0)
    check_model(ours, theirs, image(2, 2, 35, 37), device)


def test_vgg16_feature_stages_are_the_pool_outputs(device):
    theirs = TorchVGG(width=0.125).double()
    ours = vgg16(width=0.125)
    ours.load_state_dict(theirs.state_dict())
    ours.double().to(device)
    x = image(1, 3, 70, 45)
    stages = ours.feature_stages(minseg.Tensor(minseg.to_device(x, device)))
    assert list(stages) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    with torch.no_grad():
        for name, index in zip(stages, ours.pool_indices):
            assert_close_scaled(stages[name], theirs.features[:index + 1](torch.tensor(x)), name)
    assert [stage.shape[2:] for stage in stages.values()] == [(35, 22), (17, 11), (8, 5), (4, 2), (2, 1)]


def test_vgg16_has_torchvision_layout():
    model = vgg16(width=0.25)  # torchvision's vgg16 at a quarter of the channels (the full one takes seconds to init)
    assert model.pool_indices == (4, 9, 16, 23, 30)
    assert vgg16(width=0.25, batch_norm=True).pool_indices == (6, 13, 23, 33, 43)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    assert len(shapes) == 32  # 13 convs and 3 linear layers, weight and bias each
    assert shapes["features.0.weight"] == (16, 3, 3, 3) and shapes["features.28.weight"] == (128, 128, 3, 3)
    assert shapes["classifier.0.weight"] == (1024, 128 * 7 * 7) and shapes["classifier.6.weight"] == (1000, 1024)
    assert list(model.state_dict()) == list(TorchVGG(width=0.25).state_dict())


def test_scale_channels_rounds_half_up_and_keeps_at_least_one():
    assert [scale_channels(c, 0.125) for c in (64, 128, 256, 512, 4096, 48)] == [8, 16, 32, 64, 512, 6]
    assert scale_channels(48, 0.1) == 5 and scale_channels(64, 0.001) == 1 and scale_channels(64, 1.0) == 64
    with pytest.raises(ValueError, match="width must be positive"):
        vgg16(width=0)


# ---------------------------------------------------------------------------------------------- ResNet
# the last case's layer4 map (18×17) is wide enough for every multi-grid rate (4, 8, 16) to reach real pixels
RESNET_CASES = [
    ("resnet18", 32, None, 10, (35, 29)),
    ("resnet18", 8, None, None, (35, 29)),
    ("resnet34", 16, (1, 2, 4), None, (35, 29)),
    ("resnet50", 16, None, None, (35, 29)),
    ("resnet50", 8, (1, 2, 4), 7, (140, 133)),
]


@pytest.mark.parametrize("name, output_stride, multi_grid, num_classes, size", RESNET_CASES)
def test_resnet_matches_torch_in_train_and_eval_mode(name, output_stride, multi_grid, num_classes, size, device):
    torch.manual_seed(1)
    kwargs = dict(width=0.125, in_channels=2, output_stride=output_stride, multi_grid=multi_grid,
                  num_classes=num_classes)
    check_model(RESNETS[name](**kwargs), torch_resnet(name, **kwargs), image(2, 2, *size), device)


def test_resnet_feature_stages_give_low_and_high_level_features(device):
    theirs = torch_resnet("resnet50", width=0.125, output_stride=8).double().eval()
    ours = resnet50(width=0.125, output_stride=8)
    ours.load_state_dict(theirs.state_dict())
    ours.double().eval().to(device)
    x = image(2, 3, 41, 50)
    stages = ours.feature_stages(minseg.Tensor(minseg.to_device(x, device)))
    assert list(stages) == ["layer1", "layer2", "layer3", "layer4"]
    with torch.no_grad():
        low, high = theirs.stages(torch.tensor(x))
    assert_close_scaled(stages["layer1"], low, "layer1")
    assert_close_scaled(stages["layer4"], high, "layer4")
    assert dict(ours.stage_channels) == {"layer1": 32, "layer2": 64, "layer3": 128, "layer4": 256}
    assert ours.out_channels == 256


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("size", [(64, 64), (65, 50)])
def test_resnet_feature_sizes_follow_output_stride(output_stride, size, device):
    model = resnet18(width=0.0625, output_stride=output_stride).to(device).eval()
    with minseg.no_grad():
        stages = model.feature_stages(minseg.Tensor(minseg.to_device(image(1, 3, *size), device)))
    for name, stride in zip(stages, (4, 8, 16, 32)):  # each stride-2 layer gives ⌈h/2⌉
        expected = tuple(math.ceil(side / min(stride, output_stride)) for side in size)
        assert stages[name].shape[2:] == expected, name


def _dilations(layer):
    return [(block.conv2.dilation[0], block.conv2.stride[0]) for block in layer]


def test_output_stride_replaces_strides_with_dilation_as_torchvision():
    assert _dilations(resnet50(output_stride=32, width=0.0625).layer4) == [(1, 2), (1, 1), (1, 1)]
    model = resnet50(output_stride=16, width=0.0625)
    assert _dilations(model.layer3)[0] == (1, 2)
    assert _dilations(model.layer4) == [(1, 1), (2, 1), (2, 1)]  # first block: the previous dilation
    model = resnet50(output_stride=8, width=0.0625)
    assert _dilations(model.layer3) == [(1, 1)] + [(2, 1)] * 5
    assert _dilations(model.layer4) == [(2, 1), (4, 1), (4, 1)]
    assert model.layer4[0].downsample[0].stride == (1, 1)
    basic = resnet18(output_stride=8, width=0.0625)  # BasicBlock: both 3×3 convs dilated
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in basic.layer4] == [(2, 2), (4, 4)]


def test_multi_grid_multiplies_the_rate_of_every_layer4_block():
    assert _dilations(resnet50(output_stride=16, multi_grid=(1, 2, 4), width=0.0625).layer4) == [(2, 1), (4, 1), (8, 1)]
    assert _dilations(resnet50(output_stride=8, multi_grid=(1, 2, 1), width=0.0625).layer4) == [(4, 1), (8, 1), (4, 1)]
    assert stage_dilations(3, 1, 2) == [1, 2, 2]
    with pytest.raises(ValueError, match="one unit rate per block"):
        resnet18(output_stride=16, multi_grid=(1, 2, 4))


def test_resnet_rejects_unsupported_output_stride():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        resnet18(output_stride=4)


@pytest.mark.parametrize("name, block, entries", [("resnet18", BasicBlock, 122), ("resnet34", BasicBlock, 218),
                                                  ("resnet50", Bottleneck, 320), ("resnet101", Bottleneck, 626)])
def test_resnet_state_dict_has_torchvision_keys(name, block, entries):
    ours = RESNETS[name](width=0.0625, num_classes=1000)
    theirs = torch_resnet(name, width=0.0625, num_classes=1000)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert len(ours.state_dict()) == entries  # len(torchvision.models.<name>().state_dict())
    assert isinstance(ours.layer1[0], block) and "layer4.0.downsample.1.running_var" in ours.state_dict()
    assert list(RESNETS[name](width=0.0625).state_dict()) == list(theirs.state_dict())[:-2]  # no fc
