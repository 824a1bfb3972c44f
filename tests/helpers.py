"""Run a minseg op and its PyTorch twin on the same float64 inputs and compare forward and backward.

``check_op(minseg_fn, torch_fn, *inputs)``: every NumPy float array among ``inputs`` becomes a leaf that
requires grad in both frameworks (other values are passed through unchanged). The forward outputs must
agree to ``rtol``; then both outputs are back-propagated with the same random upstream gradient and the
gradient of every leaf must agree too.

``check_twin(lambda F, x: F.relu(x), *inputs)``: the same, for an op whose two spellings are identical —
the lambda runs once with ``minseg.functional`` and once with torch's functional namespace.

``check_directional_derivative(fn, x)``: where torch has no twin, ⟨∇f(x), u⟩ against the central
difference (f(x + εu) − f(x − εu)) / 2ε along a random unit direction u (Chainer's ``check_backward``).
"""

import inspect
import re

import numpy as np
import torch

import minseg
import minseg.functional as MF

RTOL = 1e-10
ATOL = 1e-12


def _outputs(result):
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return value.numpy()


def assert_close(actual, expected, rtol=RTOL, atol=ATOL, what="value"):
    actual, expected = _to_numpy(actual), _to_numpy(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def check_op(minseg_fn, torch_fn, *inputs, device="cpu", rtol=RTOL, atol=ATOL, grad=True, seed=0):
    ours, theirs, leaves = [], [], []
    for value in inputs:
        if isinstance(value, np.ndarray):
            differentiable = grad and np.issubdtype(value.dtype, np.floating)
            mine = minseg.Tensor(minseg.to_device(value, device), requires_grad=differentiable)
            twin = torch.tensor(value, requires_grad=differentiable)
            ours.append(mine)
            theirs.append(twin)
            if differentiable:
                leaves.append((mine, twin))
        else:
            ours.append(value)
            theirs.append(value)
    our_outputs = _outputs(minseg_fn(*ours))
    their_outputs = _outputs(torch_fn(*theirs))
    assert len(our_outputs) == len(their_outputs), "number of outputs differs from torch"
    for i, (mine, twin) in enumerate(zip(our_outputs, their_outputs)):
        assert mine.device == device, f"output {i} is on {mine.device}, expected {device}"
        assert_close(mine, twin, rtol, atol, what=f"forward output {i}")
    if not leaves:
        return our_outputs
    upstream = np.random.default_rng(seed).standard_normal(their_outputs[0].shape)
    their_outputs[0].backward(torch.tensor(upstream))
    our_outputs[0].backward(minseg.to_device(upstream, device))
    for i, (mine, twin) in enumerate(leaves):
        if twin.grad is None:
            assert mine.grad is None or not np.any(mine.grad.numpy()), f"input {i}: torch has no gradient"
            continue
        assert mine.grad is not None, f"input {i}: no gradient reached this input"
        assert mine.grad.dtype == mine.dtype, f"input {i}: gradient dtype {mine.grad.dtype} != {mine.dtype}"
        assert_close(mine.grad, twin.grad, rtol, atol, what=f"gradient of input {i}")
    return our_outputs


class _TorchFunctional:
    """torch's side of a twin lambda: ``F.name`` is ``torch.nn.functional.name`` where that exists (conv2d,
    pad, interpolate…), else ``torch.name`` (clamp, maximum…); sigmoid and tanh come from ``torch``, where
    torch.nn.functional's copies are deprecated."""

    def __getattr__(self, name):
        if name not in ("sigmoid", "tanh") and hasattr(torch.nn.functional, name):
            return getattr(torch.nn.functional, name)
        return getattr(torch, name)


TORCH_FUNCTIONAL = _TorchFunctional()


def check_twin(fn, *inputs, **options):
    """``check_op`` for an op written the same way in both frameworks: ``fn(F, *inputs)`` with F the
    functional namespace (``minseg.functional``, then torch's)."""
    return check_op(lambda *xs: fn(MF, *xs), lambda *xs: fn(TORCH_FUNCTIONAL, *xs), *inputs, **options)


def check_directional_derivative(fn, x, device="cpu", seed=0, eps=1e-6, rtol=1e-6, atol=1e-9):
    """Backward checked without a twin: ``fn`` maps a Tensor to a scalar Tensor; ⟨∇fn(x), u⟩ must equal
    (fn(x + εu) − fn(x − εu)) / 2ε, whose error is O(ε²), for a random unit direction u (float64 ``x``)."""
    leaf = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
    fn(leaf).backward()
    u = np.random.default_rng(seed).standard_normal(x.shape)
    u /= np.linalg.norm(u)
    value = lambda y: fn(minseg.Tensor(minseg.to_device(y, device))).item()  # noqa: E731
    numeric = (value(x + eps * u) - value(x - eps * u)) / (2 * eps)
    np.testing.assert_allclose(float(np.sum(leaf.grad.numpy() * u)), numeric, rtol=rtol, atol=atol)


def no_ties(rng, *shape):
    """Distinct values in random order (for max-type ops whose gradient is ambiguous on ties)."""
    n = int(np.prod(shape))
    return rng.permutation(np.linspace(-3.0, 3.0, n)).reshape(shape)


# torch ≥ 2.12 gives BatchNorm a ``bias`` switch and shows it in the repr; the tests pin 2.13, but a
# GPU machine may carry an older CUDA build, where our repr is compared without that field
TORCH_BATCHNORM_HAS_BIAS = "bias" in inspect.signature(torch.nn.BatchNorm2d).parameters


def repr_as_torch_prints_it(text):
    """``repr`` of one of our modules, as the installed torch would print the same module."""
    return text if TORCH_BATCHNORM_HAS_BIAS else re.sub(r", bias=(True|False)(?=, track_running_stats)", "", text)
