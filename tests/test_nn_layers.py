"""Every layer in minseg.nn against its torch.nn twin, with the twin's weights loaded through ``state_dict``.

Both modules run in float64; the outputs, the input gradient and every parameter gradient (for a random
upstream gradient) must agree to 1e-10, and so must the buffers a training step updates.
"""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as tnn

import minseg
import minseg.nn as nn
from helpers import TORCH_BATCHNORM_HAS_BIAS, assert_close, no_ties, repr_as_torch_prints_it


def twins(name, *args, **kwargs):
    """The same constructor call in both frameworks, ours holding torch's initial weights, both float64."""
    theirs = getattr(tnn, name)(*args, **kwargs).double()
    ours = getattr(nn, name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours.double(), theirs


def check_module(ours, theirs, x, device, seed=0, **forward_kwargs):
    """Forward and backward both modules on ``x``; compare output, input/parameter gradients and buffers."""
    ours.to(device)
    mine = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
    twin = torch.tensor(x, requires_grad=True)
    our_out, their_out = ours(mine, **forward_kwargs), theirs(twin, **forward_kwargs)
    assert our_out.device == device
    assert_close(our_out, their_out, what="forward output")
    upstream = np.random.default_rng(seed).standard_normal(their_out.shape)
    their_out.backward(torch.tensor(upstream))
    our_out.backward(minseg.to_device(upstream, device))
    assert_close(mine.grad, twin.grad, what="input gradient")
    our_params, their_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert our_params.keys() == their_params.keys()
    for name, param in our_params.items():
        assert param.grad is not None, f"no gradient reached {name}"
        assert_close(param.grad, their_params[name].grad, what=f"gradient of {name}")
    their_buffers = dict(theirs.named_buffers())
    for name, buffer in ours.named_buffers():
        assert_close(buffer, their_buffers[name], what=f"buffer {name}")
    return our_out


LAYER_CASES = [
    ("Linear", (5, 3), {}, (4, 5)),
    ("Linear", (5, 3), {"bias": False}, (2, 3, 5)),
    ("Conv2d", (3, 4, 3), {}, (2, 3, 7, 8)),
    ("Conv2d", (3, 4, (3, 5)), {"stride": 2, "padding": (1, 2)}, (2, 3, 9, 10)),
    ("Conv2d", (4, 6, 3), {"padding": 2, "dilation": 2, "groups": 2, "bias": False}, (1, 4, 9, 9)),
    ("Conv2d", (4, 4, 3), {"padding": 1, "groups": 4}, (2, 4, 6, 6)),
    ("Conv2d", (3, 4, 4), {"padding": "same"}, (2, 3, 7, 6)),
    ("Conv2d", (3, 4, 3), {"padding": "valid"}, (1, 3, 6, 6)),
    ("Conv2d", (3, 4, 3), {"padding": (1, 2), "padding_mode": "reflect"}, (2, 3, 6, 7)),
    ("Conv2d", (3, 4, 4), {"padding": "same", "dilation": 2, "padding_mode": "reflect"}, (1, 3, 8, 9)),
    ("Conv2d", (3, 2, 3), {"stride": 2, "padding": 2, "padding_mode": "replicate"}, (2, 3, 7, 7)),
    ("ConvTranspose2d", (3, 4, 3), {}, (2, 3, 5, 4)),
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}, (2, 4, 5, 6)),
    ("ConvTranspose2d", (3, 2, (2, 3)), {"stride": (2, 1), "dilation": 2, "bias": False}, (1, 3, 4, 5)),
    ("ConvTranspose2d", (4, 4, 4), {"stride": 2, "padding": 1}, (2, 4, 3, 3)),
    ("BatchNorm2d", (3,), {}, (4, 3, 5, 6)),
    ("BatchNorm2d", (3,), {"affine": False}, (4, 3, 5, 6)),
    ("BatchNorm2d", (3,), {"bias": False, "momentum": 0.3, "eps": 1e-3}, (4, 3, 5, 6)),
    ("BatchNorm2d", (3,), {"track_running_stats": False}, (2, 3, 4, 4)),
    ("ReLU", (), {}, (2, 3, 4, 5)),
    ("LeakyReLU", (0.2,), {}, (2, 3, 4, 5)),
    ("Sigmoid", (), {}, (2, 3, 4)),
    ("Tanh", (), {}, (2, 3, 4)),
    ("Softmax", (1,), {}, (2, 4, 3, 3)),
    ("Identity", (), {}, (2, 3)),
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Flatten", (0, 2), {}, (2, 3, 4, 5)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 6)),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 8, 9)),
    ("MaxPool2d", ((2, 3),), {"stride": 1, "dilation": 2}, (1, 2, 7, 8)),
    ("AvgPool2d", (2,), {}, (2, 3, 8, 6)),
    ("AvgPool2d", (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}, (2, 3, 8, 9)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 5, 7)),
    ("AdaptiveAvgPool2d", ((3, 4),), {}, (2, 3, 7, 9)),
    ("Upsample", (), {"scale_factor": 2}, (2, 3, 4, 5)),
    ("Upsample", (), {"size": (7, 9), "mode": "bilinear", "align_corners": True}, (1, 2, 4, 5)),
    ("Upsample", (), {"scale_factor": 1.5, "mode": "bilinear"}, (1, 2, 4, 5)),
]


def _case_id(case):
    name, args, kwargs, shape = case
    settings = ",".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"{name}({settings})-{shape}".replace(" ", "")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own speed
@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_layer_matches_torch_in_training_mode(case, device):
    name, args, kwargs, shape = case
    if "bias" in kwargs and name == "BatchNorm2d" and not TORCH_BATCHNORM_HAS_BIAS:
        pytest.skip(f"torch {torch.__version__} has no BatchNorm2d(bias=...) (added in 2.12; the tests pin 2.13)")
    ours, theirs = twins(name, *args, **kwargs)
    x = no_ties(np.random.default_rng(0), *shape)  # distinct values: max pooling has a unique winner
    check_module(ours, theirs, x, device)
    assert repr_as_torch_prints_it(repr(ours)) == repr(theirs)


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"momentum": None}, {"track_running_stats": False}],
                         ids=repr)
def test_batchnorm2d_running_statistics_and_eval_mode_match_torch(kwargs, device):
    """Three training steps (the running statistics and num_batches_tracked follow torch's), then eval mode."""
    ours, theirs = twins("BatchNorm2d", 3, **kwargs)
    rng = np.random.default_rng(1)
    for step in range(3):
        check_module(ours, theirs, rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step, device, seed=step)
    ours.eval(), theirs.eval()
    check_module(ours, theirs, rng.standard_normal((2, 3, 4, 6)), device)
    if kwargs.get("track_running_stats", True):
        assert ours.num_batches_tracked.item() == 3 and ours.num_batches_tracked.dtype == np.int64


def test_batchnorm2d_stops_updating_buffers_when_tracking_is_switched_off(device):
    """torch's rule: with buffers present but track_running_stats=False, training leaves them alone."""
    ours, theirs = twins("BatchNorm2d", 2)
    ours.track_running_stats = theirs.track_running_stats = False
    check_module(ours, theirs, np.random.default_rng(2).standard_normal((3, 2, 4, 4)), device)
    assert ours.num_batches_tracked.item() == 0
    np.testing.assert_array_equal(ours.running_var.numpy(), 1.0)


def test_batchnorm2d_rejects_non_4d_input():
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(minseg.randn(4, 3))


@pytest.mark.parametrize("name", ["Dropout", "Dropout2d"])
def test_dropout_is_the_identity_in_eval_mode(name, device):
    ours, theirs = twins(name, p=0.4)
    ours.eval(), theirs.eval()
    check_module(ours, theirs, np.random.default_rng(3).standard_normal((2, 3, 4, 5)), device)


@pytest.mark.parametrize("name, p", [("Dropout", 0.3), ("Dropout2d", 0.6)])
def test_dropout_masks_in_training_mode(name, p, device):
    """About a fraction p of elements (Dropout) or whole channels (Dropout2d) are zeroed, the rest scaled by
    1/(1 − p); the gradient flows through exactly the kept entries with the same scale."""
    layer = getattr(nn, name)(p)
    x = minseg.Tensor(minseg.to_device(np.ones((64, 50, 6, 6)), device), requires_grad=True)
    out = layer(x)
    out.sum().backward()
    values, grad = out.numpy(), x.grad.numpy()
    np.testing.assert_allclose(np.unique(values), [0.0, 1 / (1 - p)])
    np.testing.assert_array_equal(grad, values)
    assert abs((values == 0).mean() - p) < 0.02
    if name == "Dropout2d":
        per_channel = values.reshape(64, 50, -1)
        assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2)), "a channel was only partly dropped"


def test_dropout_rejects_probabilities_outside_0_1():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("output_size", [(9, 9), (10, 9), [2, 4, 10, 10]], ids=str)
def test_conv_transpose2d_output_size_picks_output_padding_like_torch(output_size, device):
    ours, theirs = twins("ConvTranspose2d", 3, 4, 3, stride=2, padding=1)
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 5))
    out = check_module(ours, theirs, x, device, output_size=output_size)
    assert out.shape[2:] == tuple(output_size[-2:])


def test_conv_transpose2d_rejects_unreachable_output_size():
    layer = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
    with pytest.raises(ValueError, match=r"valid sizes range from \(9, 9\) to \(10, 10\)"):
        layer(minseg.randn(1, 3, 5, 5), output_size=(11, 9))


@pytest.mark.parametrize("layer, message", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "groups=2 must divide"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="circular"), "padding_mode must be one of"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), "padding must be"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, groups=4), "groups=4 must divide"),
])
def test_conv_layers_reject_bad_arguments(layer, message):
    with pytest.raises(ValueError, match=message):
        layer()


def test_parameters_are_float32_by_default_and_double_casts_them():
    layers = [nn.Linear(3, 2), nn.Conv2d(2, 3, 3), nn.ConvTranspose2d(2, 3, 3), nn.BatchNorm2d(3)]
    model = nn.Sequential(*layers)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    model.double()
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    assert layers[-1].running_mean.dtype == np.float64 and layers[-1].num_batches_tracked.dtype == np.int64


def _segmentation_net(modules):
    """conv → bn → relu → pool → conv → upsample, built from either framework's layers."""
    return modules.Sequential(OrderedDict([
        ("conv1", modules.Conv2d(3, 8, 3, padding=1)),
        ("bn", modules.BatchNorm2d(8)),
        ("relu", modules.ReLU(inplace=True)),
        ("pool", modules.MaxPool2d(2)),
        ("classifier", modules.Conv2d(8, 4, 1)),
        ("up", modules.Upsample(scale_factor=2, mode="bilinear", align_corners=False)),
    ]))


def test_small_segmentation_model_matches_torch_end_to_end(device):
    theirs = _segmentation_net(tnn).double()
    ours = _segmentation_net(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.double()
    rng = np.random.default_rng(5)
    check_module(ours, theirs, rng.standard_normal((2, 3, 10, 12)), device)
    ours.zero_grad(), theirs.zero_grad()
    ours.eval(), theirs.eval()
    out = check_module(ours, theirs, rng.standard_normal((1, 3, 8, 8)), device)
    assert out.shape == (1, 4, 8, 8)


def test_layers_run_in_float32_on_the_device(device):
    model = _segmentation_net(nn).to(device)
    out = model(minseg.randn(2, 3, 8, 8, device=device))
    assert out.dtype == np.float32 and out.device == device and out.shape == (2, 4, 8, 8)
