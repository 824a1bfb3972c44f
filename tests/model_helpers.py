"""Compare a minseg model with its PyTorch re-implementation: same weights, same output, same gradients.

``check_model(ours, theirs, x, device)`` loads ``theirs``' state dict into ``ours`` (both float64), then in
training mode and again in eval mode runs both on ``x``, back-propagates one random upstream gradient and
compares the output, the input gradient, every parameter gradient and every buffer. Values are compared to
``RTOL`` relative to each array's largest magnitude, so entries that are sums of cancelling terms need not
match to more digits than the array's scale allows. A gradient that is zero up to rounding in torch (a
conv bias followed by batch norm) only has to be as negligible — relative to the largest parameter
gradient — in ours: a fixed absolute floor would be too tight for large gradients and too loose for small.
"""

import numpy as np
import torch

import minseg
from helpers import assert_close

RTOL = 1e-9


def assert_close_scaled(actual, expected, what, rtol=RTOL):
    """``actual`` equals the torch tensor ``expected`` to ``rtol`` of ``expected``'s largest magnitude."""
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    assert_close(actual, expected, rtol=rtol, atol=rtol * scale + 1e-300, what=what)


def _forward_backward(ours, theirs, x, device, seed):
    ours.zero_grad(), theirs.zero_grad()
    mine = minseg.Tensor(minseg.to_device(x, device), requires_grad=True)
    twin = torch.tensor(x, requires_grad=True)
    our_out, their_out = ours(mine), theirs(twin)
    assert our_out.device == device
    assert_close_scaled(our_out, their_out, "model output")
    upstream = np.random.default_rng(seed).standard_normal(their_out.shape)
    their_out.backward(torch.tensor(upstream))
    our_out.backward(minseg.to_device(upstream, device))
    assert_close_scaled(mine.grad, twin.grad, "input gradient")
    their_params = dict(theirs.named_parameters())
    assert dict(ours.named_parameters()).keys() == their_params.keys()
    negligible = RTOL * max(float(param.grad.abs().max()) for param in their_params.values())
    for name, param in ours.named_parameters():
        assert param.grad is not None, f"no gradient reached {name}"
        expected = their_params[name].grad
        if float(expected.abs().max()) < negligible:
            assert np.abs(param.grad.numpy()).max() < negligible, f"gradient of {name} should vanish"
        else:
            assert_close_scaled(param.grad, expected, f"gradient of {name}")
    their_buffers = dict(theirs.named_buffers())
    assert dict(ours.named_buffers()).keys() == their_buffers.keys()
    for name, buffer in ours.named_buffers():
        assert_close_scaled(buffer, their_buffers[name], f"buffer {name}")
    return our_out


def check_model(ours, theirs, x, device, seed=1):
    """Training mode (one step, which also updates batch norm's running statistics), then eval mode; return
    our training-mode output. Dropout must be off (p=0) for the training-mode comparison."""
    theirs.double()
    assert list(ours.state_dict()) == list(theirs.state_dict()), "state_dict keys differ from the torch twin's"
    ours.load_state_dict(theirs.state_dict())
    ours.double().to(device)
    ours.train(), theirs.train()
    out = _forward_backward(ours, theirs, x, device, seed)
    ours.eval(), theirs.eval()
    _forward_backward(ours, theirs, x, device, seed + 1)
    return out
