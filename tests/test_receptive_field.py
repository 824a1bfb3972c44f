"""Receptive fields: the analytic table against known values and against the measured (gradient) field.

The measured field is the support of ∂ output pixel / ∂ input. With all weights and inputs positive no ReLU
is ever off, so nothing hides a pixel that can influence the output, and with valid (unpadded) layers no
border clips it: the support's bounding box must then be exactly the analytic box.
"""

import numpy as np
import pytest

import minseg
from minseg import nn
from minseg.models import FCN32s, UNet, unet_valid_input_size, vgg16_features
from minseg.models.receptive_field import (empirical_receptive_field, format_receptive_field, receptive_field,
                                    receptive_field_box, receptive_field_support)


def positive(model, device, seed=0):
    """All weights and biases in [0.1, 1] (float64), so every activation is positive."""
    rng = np.random.default_rng(seed)
    for param in model.parameters():
        param.data = rng.uniform(0.1, 1.0, param.shape)
    return model.to(device)


def corners_and_centre(height, width):
    return [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (height // 2, width // 2)]


def test_vgg16_table():
    """VGG-16's well-known numbers: 212-pixel field and stride 32 at pool5; pixel-wise layers get no row."""
    rows = receptive_field(vgg16_features(width=1 / 32))
    assert len(rows) == 18 and [row.name for row in rows[:3]] == ["0", "2", "4"]
    assert [rows[i].rf[0] for i in (0, 1, 2, 4, 17)] == [3, 5, 6, 14, 212]
    assert rows[-1].jump == (32, 32) and rows[-1].start == (15.5, 15.5)
    text = format_receptive_field(rows)
    assert text.splitlines()[0].split() == ["layer", "type", "kernel", "stride", "padding", "dilation", "RF", "jump",
                                           "start"]
    assert text.splitlines()[-1].split() == ["30", "MaxPool2d", "2", "2", "0", "1", "212", "32", "15.5"]


STACKS = {
    "conv": lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2), nn.Conv2d(2, 1, 5)),
    "conv-pool-dilated": lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 3, 3, dilation=2), nn.BatchNorm2d(3),
        nn.AvgPool2d(3, stride=1), nn.Conv2d(3, 2, 3, dilation=3), nn.Conv2d(2, 2, (1, 3))),
    "even-kernels": lambda: nn.Sequential(nn.Conv2d(1, 2, 4, stride=2), nn.MaxPool2d(3, stride=2),
                                          nn.Conv2d(2, 1, 2, dilation=2)),
    "padded": lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                                    nn.Conv2d(2, 2, 3, padding=2, dilation=2), nn.Conv2d(2, 1, 3, padding="same")),
}


@pytest.mark.parametrize("name", STACKS)
def test_analytic_box_is_the_measured_support(name, device):
    model = positive(STACKS[name](), device)
    rows = receptive_field(model)
    in_channels = model[0].in_channels
    size = (37, 42)
    with minseg.no_grad():
        out_size = model(minseg.zeros(1, in_channels, *size, dtype=np.float64, device=device)).shape[2:]
    for index in corners_and_centre(*out_size):
        measured = empirical_receptive_field(model, (in_channels,) + size, index)
        assert measured.output_index == index
        assert measured.box == receptive_field_box(rows[-1], index, size), f"output pixel {index}"
    if name == "conv":  # no gaps without dilation: the support fills the box
        top, left, bottom, right = measured.box
        assert np.count_nonzero(measured.grad) == (bottom - top + 1) * (right - left + 1) == rows[-1].rf[0] ** 2


def test_max_pool_gives_its_gradient_to_one_winner(device):
    """Measured as is, a max pool hides the losers of each window; the default measures it as an average pool
    and leaves the model as it was."""
    model = positive(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3)), device)
    model.train()
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 1, 20, 20))
    full = empirical_receptive_field(model, x)
    sparse = empirical_receptive_field(model, x, replace_max_pool=False)
    assert np.count_nonzero(full.grad) == 8 * 8 and np.count_nonzero(sparse.grad) < 8 * 8
    assert set(zip(*np.nonzero(sparse.grad))) <= set(zip(*np.nonzero(full.grad)))
    assert "forward" not in model[1].__dict__ and model.training and model[0].training
    assert all(param.requires_grad and param.grad is None for param in model.parameters())


def test_transposed_conv_rows_give_the_largest_field(device):
    """After a transposed conv the field depends on the output pixel's phase: the row gives the largest one
    (its centre is the phase average, so its box is approximate there)."""
    model = positive(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 4, stride=2), nn.Conv2d(2, 1, 3)),
                     device)
    rows = receptive_field(model)
    assert [(row.rf[0], row.jump[0], row.start[0]) for row in rows] == [(3, 1, 1), (4, 0.5, 0.25), (5, 0.5, 0.75)]
    heights = [empirical_receptive_field(model, (1, 12, 12), (i, 5)).box for i in range(4, 10)]
    assert max(bottom - top + 1 for top, _, bottom, _ in heights) == rows[-1].rf[0]


@pytest.mark.parametrize("chain", ["k4s2", "k3s2", "fcn-like"])
def test_support_is_exact_after_transposed_convs(chain, device):
    """``receptive_field_support`` maps each output pixel back exactly, whatever its phase."""
    layers = {"k4s2": [nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 4, stride=2), nn.Conv2d(2, 1, 3)],
              "k3s2": [nn.Conv2d(1, 2, 3, stride=2), nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1)],
              "fcn-like": [nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1),
                           nn.MaxPool2d(2), nn.ConvTranspose2d(2, 1, 8, stride=4, padding=2)]}[chain]
    model = positive(nn.Sequential(*layers), device)
    size = (16, 16)
    out = model(minseg.zeros((1, 1) + size, device=device)).shape[-2:]
    for index in [(i, j) for i in range(out[0]) for j in (1, out[1] // 2)]:
        measured = empirical_receptive_field(model, (1,) + size, index).box
        assert receptive_field_support(model, index, size) == measured, f"output pixel {index}"


def test_unet_encoder(device):
    """The contracting path of a valid U-Net: 68-pixel field at depth 3, exactly the measured one."""
    model = positive(UNet(1, 2, base_channels=2, depth=3), device)
    path = model.contracting_path()
    rows = receptive_field(path)
    assert [row.layer for row in rows[:3]] == ["Conv2d", "Conv2d", "MaxPool2d"]
    assert rows[-1].rf == (68, 68) and rows[-1].jump == (8, 8) and rows[-1].start == (33.5, 33.5)
    size = (124, 132)
    for index in corners_and_centre(8, 9):  # the bottleneck's output size for 124×132
        assert empirical_receptive_field(path, (1,) + size, index).box == receptive_field_box(rows[-1], index, size)


def test_whole_models(device):
    """Any model works — here U-Net (its output pixel sees an area around the input pixel it is centred on,
    92 − 48 = 44 pixels in at depth 3) and FCN-32s, whose 400-pixel field covers a small image entirely."""
    unet = positive(UNet(1, 2, base_channels=2, depth=3), device)
    size = unet_valid_input_size(12, depth=3)
    measured = empirical_receptive_field(unet, (1, size, size), (3, 7))
    top, left, bottom, right = measured.box
    assert 0 <= top <= 3 + 44 <= bottom < size and 0 <= left <= 7 + 44 <= right < size
    fcn = positive(FCN32s(2, width=1 / 32), device)
    assert empirical_receptive_field(fcn, (3, 21, 18), (0, 0), channel=1).box == (0, 0, 20, 17)


def test_refusals():
    with pytest.raises(TypeError, match="AdaptiveAvgPool2d has no fixed window"):
        receptive_field([nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)])
    with pytest.raises(ValueError, match=r"one image \(1, C, H, W\)"):
        empirical_receptive_field(nn.Conv2d(1, 1, 3), np.ones((2, 1, 5, 5)))
    with pytest.raises(ValueError, match="dilated max pool"):
        empirical_receptive_field(nn.Sequential(nn.MaxPool2d(2, dilation=2)), (1, 8, 8))
