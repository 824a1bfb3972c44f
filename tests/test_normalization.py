"""batch_norm against torch (output, gradients, running statistics); dropout and dropout2d by their statistics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import assert_close, check_op

SHAPES = [(5, 3), (4, 3, 7), (2, 3, 5, 7), (3, 2, 1, 1)]
AFFINE = ["none", "weight", "weight_and_bias"]


def _buffers(rng, channels, device):
    """Matching running mean/var for both frameworks (not leaves: batch_norm updates them in place)."""
    mean, var = rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)
    ours = [minseg.Tensor(minseg.to_device(a.copy(), device)) for a in (mean, var)]
    theirs = [torch.tensor(a.copy()) for a in (mean, var)]
    return ours, theirs


def _with_affine(norm, affine):
    """Wrap ``norm(x, weight, bias)`` so that check_op passes exactly the leaves that ``affine`` asks for."""
    if affine == "none":
        return lambda x: norm(x, None, None)
    if affine == "weight":
        return lambda x, w: norm(x, w, None)
    return norm


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", AFFINE)
def test_batch_norm_matches_torch(shape, training, affine, rng, device):
    channels = shape[1]
    x = rng.standard_normal(shape) * 3 + 1
    leaves = [x, rng.standard_normal(channels), rng.standard_normal(channels)][:1 + AFFINE.index(affine)]
    (our_mean, our_var), (their_mean, their_var) = _buffers(rng, channels, device)
    before = our_mean.numpy().copy(), our_var.numpy().copy()
    ours = _with_affine(lambda t, w, b: F.batch_norm(t, our_mean, our_var, w, b, training, 0.3, 1e-3), affine)
    theirs = _with_affine(lambda t, w, b: TF.batch_norm(t, their_mean, their_var, w, b, training, 0.3, 1e-3), affine)
    check_op(ours, theirs, *leaves, device=device)
    assert_close(our_mean, their_mean, what="running_mean")
    assert_close(our_var, their_var, what="running_var")
    if not training:
        np.testing.assert_array_equal(our_mean.numpy(), before[0])
        np.testing.assert_array_equal(our_var.numpy(), before[1])


def test_batch_norm_trains_without_running_buffers(rng, device):
    check_op(lambda t, w, b: F.batch_norm(t, None, None, w, b, training=True),
             lambda t, w, b: TF.batch_norm(t, None, None, w, b, training=True),
             rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(3), rng.standard_normal(3), device=device)


def test_running_var_stores_the_unbiased_variance(device):
    x = minseg.Tensor(minseg.to_device(np.array([[1.0], [3.0]]), device))  # batch var 1, unbiased var 2
    mean, var = minseg.zeros(1, dtype=np.float64, device=device), minseg.ones(1, dtype=np.float64, device=device)
    F.batch_norm(x, mean, var, training=True, momentum=1.0)
    assert mean.item() == 2.0 and var.item() == 2.0


@pytest.mark.parametrize("kwargs,match", [
    ({"input_shape": (1, 3)}, "more than 1 value per channel"),
    ({"input_shape": (1, 3, 1, 1)}, "more than 1 value per channel"),
    ({"training": False, "running_mean": None}, "running_mean and running_var are required"),
    ({"weight": minseg.ones(4)}, r"weight must have shape \(3,\).*got \(4,\)"),
    ({"running_var": minseg.ones(2)}, r"running_var must have shape \(3,\)"),
    ({"input_shape": (3,)}, "at least 2 dims"),
])
def test_batch_norm_bad_arguments_are_named(kwargs, match):
    kwargs = {"input_shape": (2, 3), "running_mean": minseg.zeros(3), "running_var": minseg.ones(3),
              "training": True, **kwargs}
    x = minseg.zeros(*kwargs.pop("input_shape"))
    with pytest.raises(ValueError, match=match):
        F.batch_norm(x, kwargs.pop("running_mean"), kwargs.pop("running_var"), **kwargs)


# ------------------------------------------------------------------ dropout
@pytest.fixture(autouse=True)
def _restore_rng():
    """Tests here reseed the shared generator; put its state back for whoever runs next."""
    state = minseg.get_rng_state()
    yield
    minseg.set_rng_state(state)


def _leaf(array, device):
    return minseg.Tensor(minseg.to_device(array, device), requires_grad=True)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_keep_rate_scale_and_gradient(p, device):
    rng = np.random.default_rng(0)
    x = _leaf(rng.uniform(1.0, 2.0, (200, 500)), device)
    out = F.dropout(x, p)
    ratio = out.numpy() / x.numpy()  # the mask times the scale
    kept = ratio != 0
    n = ratio.size
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # five standard deviations
    np.testing.assert_allclose(ratio[kept], 1 / (1 - p), rtol=1e-12)
    upstream = rng.standard_normal(ratio.shape)
    out.backward(minseg.to_device(upstream, device))
    np.testing.assert_allclose(x.grad.numpy(), upstream * ratio, rtol=1e-12)


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout2d_zeroes_whole_channels(p, device):
    rng = np.random.default_rng(1)
    x = _leaf(rng.uniform(1.0, 2.0, (40, 250, 3, 5)), device)
    out = F.dropout2d(x, p)
    ratio = out.numpy() / x.numpy()
    per_channel = ratio.reshape(40, 250, -1)
    dropped = per_channel == 0
    assert np.all(dropped == dropped[..., :1]), "a channel was only partly dropped"
    kept = ~dropped[..., 0]
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / kept.size)
    np.testing.assert_allclose(per_channel[kept], 1 / (1 - p), rtol=1e-12)
    upstream = rng.standard_normal(ratio.shape)
    out.backward(minseg.to_device(upstream, device))
    np.testing.assert_allclose(x.grad.numpy(), upstream * ratio, rtol=1e-12)


@pytest.mark.parametrize("drop", [F.dropout, F.dropout2d])
def test_dropout_edges_and_eval(drop, device):
    x = _leaf(np.random.default_rng(2).standard_normal((2, 3, 4, 4)), device)
    assert drop(x, 0.0) is x
    assert drop(x, 0.7, training=False) is x
    out = drop(x, 1.0)
    assert out.device == device and not np.any(out.numpy())
    out.backward(minseg.to_device(np.ones(x.shape), device))
    assert not np.any(x.grad.numpy())


@pytest.mark.parametrize("drop", [F.dropout, F.dropout2d])
def test_a_seed_gives_the_same_mask_on_every_device(drop, device):
    x = np.random.default_rng(3).uniform(1.0, 2.0, (2, 8, 3, 3))
    minseg.manual_seed(7)
    on_cpu = drop(minseg.Tensor(x), 0.5).numpy()
    minseg.manual_seed(7)
    on_device = drop(minseg.Tensor(minseg.to_device(x, device)), 0.5)
    assert on_device.device == device
    np.testing.assert_array_equal(on_device.numpy(), on_cpu)


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", None])
@pytest.mark.parametrize("drop", [F.dropout, F.dropout2d])
def test_dropout_probability_is_checked(drop, p):
    with pytest.raises(ValueError, match=r"p \(the probability of zeroing\) must be a number in \[0, 1\]"):
        drop(minseg.zeros(2, 3, 4, 4), p)


def test_dropout2d_needs_nchw():
    with pytest.raises(ValueError, match=r"dropout2d: input must be \(N, C, H, W\)"):
        F.dropout2d(minseg.zeros(2, 3, 4), 0.5)


def test_float32_variance_survives_a_large_mean(rng):
    """Σ (x − μ)² (two passes), not E[x²] − μ²: a channel at mean 1000 with std 1 keeps its variance in float32."""
    x64 = 1000.0 + rng.standard_normal((4, 3, 16, 16))
    out32 = F.batch_norm(minseg.tensor(x64.astype(np.float32)), None, None, training=True)
    out64 = F.batch_norm(minseg.tensor(x64), None, None, training=True)
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), atol=2e-3)
