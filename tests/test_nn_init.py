"""nn.init against torch.nn.init's formulas, the layers' default initialisation against torch's bounds, and
FCN's bilinear initialisation of a transposed convolution against bilinear interpolation."""

import math

import numpy as np
import pytest
import torch
import torch.nn as tnn

import minseg
import minseg.functional as F
import minseg.nn as nn
from minseg.nn import init

WEIGHT_SHAPES = [(7, 5), (8, 4, 3, 3), (4, 2, 3, 5), (3, 6, 2), (1, 1)]


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("conv_transpose2d", None), ("sigmoid", None), ("tanh", None),
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0), ("leaky_relu", math.sqrt(5)),
    ("selu", None),
])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == tnn.init.calculate_gain(nonlinearity, param)


def test_calculate_gain_rejects_unknown_names_and_bad_slopes():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("shape", WEIGHT_SHAPES, ids=str)
def test_fan_in_and_fan_out_match_torch(shape):
    expected = tnn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fan_in_and_fan_out(minseg.zeros(*shape)) == expected


def test_fan_needs_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fan_in_and_fan_out(minseg.zeros(5))


BIG = (256, 64, 3, 3)  # fan_in 576, fan_out 2304; 147,456 draws: the sample std is within ~0.4% of σ


def _expected_std(name, fan_in, fan_out):
    return {
        "kaiming_normal_": math.sqrt(2) / math.sqrt(fan_in),                        # relu, fan_in
        "kaiming_uniform_": math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(fan_out),       # leaky_relu(0.2), fan_out
        "xavier_normal_": 0.5 * math.sqrt(2 / (fan_in + fan_out)),
        "xavier_uniform_": 0.5 * math.sqrt(2 / (fan_in + fan_out)),
    }[name]


DRAWS = {
    "kaiming_normal_": lambda t: init.kaiming_normal_(t, nonlinearity="relu"),
    "kaiming_uniform_": lambda t: init.kaiming_uniform_(t, a=0.2, mode="fan_out"),
    "xavier_normal_": lambda t: init.xavier_normal_(t, gain=0.5),
    "xavier_uniform_": lambda t: init.xavier_uniform_(t, gain=0.5),
}


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_random_inits_have_the_formula_std(name, device):
    weight = nn.Parameter(minseg.zeros(*BIG, device=device))
    storage = weight.data
    assert DRAWS[name](weight) is weight
    assert weight.data is storage and weight.device == device and weight.dtype == np.float32
    assert weight.grad is None and weight.is_leaf
    values = weight.numpy()
    std = _expected_std(name, *init.fan_in_and_fan_out(weight))
    assert abs(values.std() / std - 1) < 0.02
    assert abs(values.mean()) < 0.02 * std
    if name.endswith("uniform_"):
        bound = math.sqrt(3) * std
        assert bound * 0.999 < np.abs(values).max() <= bound


def test_inits_follow_the_shared_seed_on_every_device(device):
    minseg.manual_seed(7)
    on_cpu = init.kaiming_uniform_(minseg.zeros(4, 3)).numpy()
    minseg.manual_seed(7)
    on_device = init.kaiming_uniform_(minseg.zeros(4, 3, device=device)).numpy()
    np.testing.assert_array_equal(on_cpu, on_device)


def test_simple_fills(device):
    weight = minseg.zeros(300, 200, dtype=np.float64, device=device)
    np.testing.assert_array_equal(init.constant_(weight, 2.5).numpy(), 2.5)
    np.testing.assert_array_equal(init.ones_(weight).numpy(), 1.0)
    np.testing.assert_array_equal(init.zeros_(weight).numpy(), 0.0)
    values = init.uniform_(weight, -2.0, 3.0).numpy()
    assert values.min() >= -2.0 and values.max() < 3.0 and abs(values.mean() - 0.5) < 0.02
    values = init.normal_(weight, 1.0, 2.0).numpy()
    assert abs(values.mean() - 1.0) < 0.02 and abs(values.std() - 2.0) < 0.02


def test_kaiming_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="'fan_in' or 'fan_out'"):
        init.kaiming_normal_(minseg.zeros(3, 3), mode="fan_avg")


DEFAULT_INIT_CASES = [
    ("Linear", (400, 300), {}),
    ("Conv2d", (64, 96, 3), {}),
    ("Conv2d", (32, 64, 3), {"groups": 4}),
    ("ConvTranspose2d", (16, 64, 4), {"stride": 2, "groups": 2}),  # weight (16, 32, 4, 4): fan_in = 32·16
]


@pytest.mark.parametrize("name, args, kwargs", DEFAULT_INIT_CASES, ids=lambda v: str(v))
def test_default_init_uses_torchs_bounds(name, args, kwargs):
    """Weight and bias ~ U(±1/√fan_in) with fan_in from the weight's axis 1, exactly as torch computes it."""
    minseg.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(tnn, name)(*args, **kwargs)
    fan_in, _ = tnn.init._calculate_fan_in_and_fan_out(theirs.weight)
    bound = 1 / math.sqrt(fan_in)
    for param_name in ("weight", "bias"):
        values = getattr(ours, param_name).numpy()
        assert values.shape == tuple(getattr(theirs, param_name).shape)
        assert 0.9 * bound < np.abs(values).max() <= bound, param_name
    assert abs(ours.weight.numpy().std() / theirs.weight.detach().numpy().std() - 1) < 0.03


def test_batchnorm_default_init():
    layer = nn.BatchNorm2d(5)
    for name, value in [("weight", 1), ("bias", 0), ("running_mean", 0), ("running_var", 1)]:
        np.testing.assert_array_equal(getattr(layer, name).numpy(), np.full(5, value, np.float32))
    assert layer.num_batches_tracked.item() == 0


def test_bilinear_kernel_weights():
    np.testing.assert_allclose(init.bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(init.bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    np.testing.assert_allclose(init.bilinear_kernel(1), [[1.0]])


def test_bilinear_upsampling_puts_the_kernel_on_the_channel_diagonal():
    weight = nn.Parameter(minseg.randn(3, 3, 4, 4))
    init.bilinear_upsampling_(weight)
    values = weight.numpy()
    for source in range(3):
        for target in range(3):
            expected = init.bilinear_kernel(4) if source == target else np.zeros((4, 4))
            np.testing.assert_allclose(values[source, target], expected)


@pytest.mark.parametrize("shape", [(3, 2, 4, 4), (2, 2, 4, 3), (2, 2, 4)], ids=str)
def test_bilinear_upsampling_rejects_non_square_channel_maps(shape):
    with pytest.raises(ValueError, match=r"\(C, C, k, k\)"):
        init.bilinear_upsampling_(minseg.zeros(*shape))


@pytest.mark.parametrize("factor", [2, 4])
def test_bilinear_transposed_conv_upsamples_constants_and_ramps(factor, device):
    """ConvTranspose2d(k=2f, stride=f, padding=f/2) with FCN's init is bilinear upsampling by f: a constant
    stays constant and a ramp stays a ramp (slope / f) away from the f/2-pixel border, where it agrees with
    interpolate(bilinear, align_corners=False)."""
    layer = nn.ConvTranspose2d(2, 2, 2 * factor, stride=factor, padding=factor // 2, bias=False).double()
    init.bilinear_upsampling_(layer.weight)
    layer.to(device)
    rows, cols = np.meshgrid(np.arange(6.0), np.arange(7.0), indexing="ij")
    images = np.stack([np.full((6, 7), 3.0), 2 * rows - 0.5 * cols + 1])[None]           # (1, 2, 6, 7)
    x = minseg.Tensor(minseg.to_device(images, device))
    with minseg.no_grad():
        out = layer(x)
        reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == (1, 2, 6 * factor, 7 * factor)
    border = factor // 2
    inner = (0, slice(None), slice(border, -border), slice(border, -border))
    upsampled = out.numpy()[inner]
    np.testing.assert_allclose(upsampled[0], 3.0)
    np.testing.assert_allclose(np.diff(upsampled[1], axis=0), 2 / factor)
    np.testing.assert_allclose(np.diff(upsampled[1], axis=1), -0.5 / factor)
    np.testing.assert_allclose(upsampled, reference.numpy()[inner])
