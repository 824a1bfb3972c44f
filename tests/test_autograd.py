"""The engine itself: graph shapes, accumulation, freeing, no_grad, factories and error messages."""

import numpy as np
import pytest
import torch

import minseg
import minseg.functional as F
from minseg.core.autograd import sum_to
from helpers import check_directional_derivative, check_twin


def _pair(values, device):
    ours = minseg.tensor(np.asarray(values, dtype=np.float64), device=device, requires_grad=True)
    theirs = torch.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)
    return ours, theirs


def _diamond(F, x):
    y = x * 3.0
    return F.exp(y) + y * y  # y feeds two nodes that meet again at +


def test_diamond_graph_sums_both_paths(device):
    check_twin(_diamond, np.array([0.5, -1.5, 2.0]), device=device)


def test_tensor_used_twice_in_one_op(device):
    check_twin(lambda F, x: x * x, np.array([1.0, 2.0, -3.0]), device=device)


def test_a_mixed_graph_matches_finite_differences(device):
    """Broadcasting, reuse, indexing and reductions in one graph: ⟨∇f(x), u⟩ equals the central difference."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    check_directional_derivative(
        lambda t: F.logsumexp(F.tanh(t * t[:1]) + t.sum(0) * F.sigmoid(t), 1).mean(), x, device=device)


def test_gradients_accumulate_across_backward_calls(device):
    x, _ = _pair([1.0, 2.0], device)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_ten_thousand_op_chain_needs_no_recursion(device):
    x, _ = _pair([1.0], device)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)
    del y  # tearing down a deep graph must not overflow the stack either


def test_no_grad_builds_no_graph(device):
    x, _ = _pair([1.0, 2.0], device)
    with minseg.no_grad():
        y = (x * 2.0).sum()
        assert not minseg.is_grad_enabled()
    assert minseg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_works_as_a_decorator():
    @minseg.no_grad()
    def double(t):
        return t * 2.0

    assert not double(minseg.ones(2, requires_grad=True)).requires_grad


def test_second_backward_through_freed_graph_errors(device):
    x, _ = _pair([1.0, 2.0], device)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward(device):
    x, _ = _pair([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_saved_arrays_are_released_after_backward(device):
    x, _ = _pair([1.0, 2.0], device)
    y = x.exp()
    assert y._ctx.saved
    y.sum().backward()
    assert y._ctx.saved == () and y._ctx.freed


def test_one_switch_nests_and_restores_the_previous_state():
    """no_grad and enable_grad are set_grad_enabled(False / True): each block restores what it found."""
    x = minseg.tensor([1.0, 2.0], requires_grad=True)
    with minseg.set_grad_enabled(False):
        with minseg.enable_grad():
            assert (x * 2).requires_grad
            with minseg.no_grad():
                assert not (x * 2).requires_grad
            assert minseg.is_grad_enabled()
        assert not minseg.is_grad_enabled() and not (x * 2).requires_grad
    assert minseg.is_grad_enabled() and (x * 2).requires_grad


def test_inputs_that_need_no_grad_get_none():
    a = minseg.tensor([1.0, 2.0], requires_grad=True)
    b = minseg.tensor([3.0, 4.0])
    (a * b).sum().backward()
    assert b.grad is None
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])


def test_gradient_keeps_the_input_dtype_under_promotion():
    a = minseg.tensor([1.0, 2.0], dtype=np.float32, requires_grad=True)
    b = minseg.tensor([3.0, 4.0], dtype=np.float64, requires_grad=True)
    out = a * b
    assert out.dtype == np.float64
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_detach_cuts_the_graph():
    x = minseg.ones(3, requires_grad=True)
    y = (x * 2.0).detach()
    assert not y.requires_grad and y.is_leaf


def test_backward_checks_the_given_gradient():
    y = minseg.ones(2, 3, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="single-element"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the output has shape \(2, 3\)"):
        y.backward(np.ones(3, dtype=np.float32))


def test_sum_to_reverses_broadcasting():
    grad = np.ones((2, 3, 4))
    assert sum_to(grad, (3, 1)).tolist() == [[8.0]] * 3
    assert sum_to(grad, ()).item() == 24.0
    assert sum_to(grad, (2, 3, 4)) is grad


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="requires_grad=True needs a floating-point tensor; got dtype int64"):
        minseg.tensor([1, 2, 3], requires_grad=True)


def test_factories_follow_torch_defaults(device):
    assert minseg.zeros(2, 3, device=device).dtype == np.float32
    assert minseg.ones((2, 3), dtype=np.float64, device=device).shape == (2, 3)
    assert minseg.arange(5).dtype == np.int64 and minseg.arange(0.0, 1.0, 0.25).dtype == np.float32
    assert minseg.tensor([1.0, 2.0]).dtype == np.float32          # Python floats: float32 like torch
    assert minseg.tensor(np.zeros(2)).dtype == np.float64          # NumPy arrays keep their dtype
    assert minseg.tensor([1, 2]).dtype == np.int64
    assert minseg.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert minseg.zeros(2, device=device).device == device


def test_randn_is_reproducible_with_manual_seed():
    minseg.manual_seed(7)
    a = minseg.randn(3, 4).numpy()
    minseg.manual_seed(7)
    b = minseg.randn(3, 4).numpy()
    np.testing.assert_array_equal(a, b)
    assert abs(minseg.randn(10_000).numpy().std() - 1.0) < 0.05


def test_tensor_conversions():
    x = minseg.tensor([[1.5, 2.5]])
    assert minseg.tensor([3.0]).item() == 3.0 and float(minseg.tensor(2.0)) == 2.0
    assert x.double().dtype == np.float64 and x.long().dtype == np.int64
    assert x.to(np.float64).dtype == np.float64
    assert x.tolist() == [[1.5, 2.5]] and x.size() == (1, 2) and x.size(1) == 2 and len(x) == 1
    assert "requires_grad=True" in repr(minseg.ones(1, requires_grad=True))
    with pytest.raises(ValueError, match="single-element"):
        x.item()


def test_cast_is_differentiable():
    x = minseg.tensor([1.0, 2.0], dtype=np.float32, requires_grad=True)
    (x.double() * 3.0).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [3.0, 3.0]


def test_device_mix_error_names_arguments_and_devices(monkeypatch):
    """Simulated on a CPU machine: one array reports itself as living on cuda:0."""
    import minseg.core.autograd as autograd

    class OnGpu(np.ndarray):
        pass

    real_device_of = autograd.device_of
    monkeypatch.setattr(autograd, "device_of", lambda a: "cuda:0" if isinstance(a, OnGpu) else real_device_of(a))
    a = minseg.ones(2)
    b = minseg.Tensor(np.ones(2, dtype=np.float32).view(OnGpu))
    with pytest.raises(ValueError, match="Add: all tensors must be on one device; got input on cpu, other on cuda:0"):
        F.add(a, b)
    with pytest.raises(ValueError, match=r"tensors\[1\] on cuda:0"):
        F.cat([a, b])
    # a NumPy scalar is a number, not a CPU array: it mixes with a tensor on any device (found on a GPU)
    assert F.div(b, np.float64(0.5)).tolist() == [2.0, 2.0]


def test_device_mix_error_on_a_real_gpu(gpu):
    with pytest.raises(ValueError, match="input on cpu, other on cuda:0"):
        F.add(minseg.ones(2), minseg.ones(2, device=gpu))


def test_gradient_flows_back_across_devices(gpu):
    x = minseg.ones(3, requires_grad=True)
    (x.to(gpu) * 2.0).sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [2.0, 2.0, 2.0]


def test_the_graph_does_not_keep_intermediate_arrays_alive():
    """A node links to the nodes of its inputs, not to their data: an intermediate array that no backward
    needs is freed as soon as the program drops it (the peak memory of a training step depends on it)."""
    import gc
    import weakref

    import minseg.functional as F

    leaf = minseg.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    shifted = leaf + 1.0                     # Add saves nothing of its inputs
    total = F.relu(shifted).sum()            # relu keeps its own output, not its input
    watch = weakref.ref(shifted.data)
    del shifted
    gc.collect()
    assert watch() is None
    total.backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), np.ones((2, 3)))


def test_relu_keeps_only_its_output():
    import minseg.functional as F

    x = minseg.Tensor(np.array([-1.0, 0.0, 2.0, np.nan]), requires_grad=True)
    y = F.relu(x)
    (saved,) = y._ctx.saved
    assert saved is y.data
    y.backward(np.ones(4))
    twin = torch.tensor(x.numpy(), requires_grad=True)
    torch.relu(twin).backward(torch.ones(4))
    np.testing.assert_array_equal(x.grad.numpy(), twin.grad.numpy())      # [0, 0, 1, 1]: NaN passes the gradient
