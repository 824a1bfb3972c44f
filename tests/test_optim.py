"""Optimizers and lr schedules against torch.optim: same float64 parameters, same gradients, 20+ steps."""

import numpy as np
import pytest
import torch

import minseg
from minseg import optim
from minseg.optim import lr_scheduler

SHAPES = [(4, 3), (5,), (2, 3, 2)]
STEPS = 25
RTOL = 1e-12

SGD_OPTIONS = [
    {},
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3),
    dict(momentum=0.9, nesterov=True),
    dict(weight_decay=1e-2),
    dict(momentum=0.8, weight_decay=5e-3, nesterov=True),
    dict(momentum=0.9, dampening=0.5, weight_decay=1e-2),
    dict(momentum=0.5, weight_decay=1e-3, maximize=True),
]
ADAM_OPTIONS = [
    {},
    dict(amsgrad=True),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, amsgrad=True),
    dict(betas=(0.5, 0.9), eps=1e-6),
    dict(maximize=True, weight_decay=0.05),
]
ADAMW_OPTIONS = [{}, dict(amsgrad=True), dict(weight_decay=0.1, amsgrad=True), dict(maximize=True)]
OPTIMIZER_GRID = ([("SGD", o) for o in SGD_OPTIONS] + [("Adam", o) for o in ADAM_OPTIONS]
                  + [("AdamW", o) for o in ADAMW_OPTIONS])


# ---------------------------------------------------------------- helpers
def _params(device, values=None):
    """Twin leaves: ours on ``device``, torch's on the CPU, from the same float64 values."""
    if values is None:
        rng = np.random.default_rng(0)
        values = [rng.standard_normal(shape) for shape in SHAPES]
    ours = [minseg.Tensor(minseg.to_device(v, device), requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    return ours, theirs


def _groups(params):
    """Two parameter groups with different learning rates."""
    return [{"params": params[:2], "lr": 0.05}, {"params": params[2:], "lr": 0.01}]


def _gradients(steps):
    """One gradient per parameter and step; the last parameter gets none every third step (it must be skipped)."""
    rng = np.random.default_rng(1)
    return [[None if i == 2 and step % 3 == 2 else rng.standard_normal(shape) for i, shape in enumerate(SHAPES)]
            for step in range(steps)]


def _set_grads(params, grads, device=None):
    for param, grad in zip(params, grads):
        if grad is None:
            param.grad = None
        elif device is None:
            param.grad = torch.tensor(grad)
        else:
            param.grad = minseg.Tensor(minseg.to_device(grad, device))


def _lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


def _assert_params_close(ours, theirs):
    for i, (mine, twin) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(mine.numpy(), twin.detach().numpy(), rtol=RTOL, atol=1e-15,
                                   err_msg=f"parameter {i}")


def _poly(lib, optimizer, total_iters):
    """DeepLab's poly schedule: our PolyLR, torch's PolynomialLR with power 0.9."""
    if lib is lr_scheduler:
        return lib.PolyLR(optimizer, total_iters)
    return lib.PolynomialLR(optimizer, total_iters, power=0.9)


SCHEDULES = {
    "step": lambda lib, opt: lib.StepLR(opt, step_size=3, gamma=0.5),
    "step-default-gamma": lambda lib, opt: lib.StepLR(opt, 7),
    "cosine-past-T_max": lambda lib, opt: lib.CosineAnnealingLR(opt, T_max=10, eta_min=1e-4),
    "cosine": lambda lib, opt: lib.CosineAnnealingLR(opt, 25),
    "polynomial-defaults": lambda lib, opt: lib.PolynomialLR(opt),
    "polynomial-squared": lambda lib, opt: lib.PolynomialLR(opt, total_iters=20, power=2.0),
    "poly-deeplab": lambda lib, opt: _poly(lib, opt, 20),
    "linear-defaults": lambda lib, opt: lib.LinearLR(opt),
    "linear-warmup": lambda lib, opt: lib.LinearLR(opt, start_factor=0.1, total_iters=8),
    "linear-decay": lambda lib, opt: lib.LinearLR(opt, start_factor=1.0, end_factor=0.2, total_iters=12),
    "warmup-then-poly": lambda lib, opt: lib.SequentialLR(
        opt, [lib.LinearLR(opt, start_factor=0.1, total_iters=5), _poly(lib, opt, 20)], milestones=[5]),
    "linear-step-cosine": lambda lib, opt: lib.SequentialLR(
        opt, [lib.LinearLR(opt, 0.25, total_iters=4), lib.StepLR(opt, 3, 0.5), lib.CosineAnnealingLR(opt, 10, 1e-3)],
        milestones=[4, 12]),
}


# ---------------------------------------------------------------- optimizers vs torch
@pytest.mark.parametrize("name,options", OPTIMIZER_GRID,
                         ids=[f"{name}-{options or 'defaults'}" for name, options in OPTIMIZER_GRID])
def test_optimizer_matches_torch(name, options, device):
    ours, theirs = _params(device)
    optimizer = getattr(optim, name)(_groups(ours), **options)
    twin = getattr(torch.optim, name)(_groups(theirs), foreach=False, **options)
    for grads in _gradients(STEPS):
        _set_grads(ours, grads, device)
        _set_grads(theirs, grads)
        optimizer.step()
        twin.step()
        assert _lrs(optimizer) == _lrs(twin)
        for param, grad in zip(ours, grads):  # step reads the gradients, never changes them
            if grad is not None:
                np.testing.assert_array_equal(param.grad.numpy(), grad)
    _assert_params_close(ours, theirs)
    assert all(p.is_leaf and p.requires_grad for p in ours), "step must not build a graph"

    mine, theirs_state = optimizer.state_dict(), twin.state_dict()
    assert mine["state"].keys() == theirs_state["state"].keys(), "same parameters hold state as in torch"
    for index, buffers in mine["state"].items():
        assert buffers.keys() == theirs_state["state"][index].keys()
        for key, value in buffers.items():
            expected = theirs_state["state"][index][key]
            if key == "step":
                assert value == expected.item()
            else:
                np.testing.assert_allclose(minseg.to_device(value, "cpu"), expected.numpy(), rtol=RTOL, atol=1e-15)
    for group, twin_group in zip(mine["param_groups"], theirs_state["param_groups"]):
        assert {key: twin_group[key] for key in group} == group, "hyper-parameters and indices as in torch"


def test_float32_parameters_stay_float32(device):
    param = minseg.Tensor(minseg.to_device(np.ones(3, np.float32), device), requires_grad=True)
    optimizer = optim.Adam([param], lr=0.1, weight_decay=0.01, amsgrad=True)
    param.grad = minseg.Tensor(minseg.to_device(np.full(3, 0.5, np.float32), device))
    optimizer.step()
    assert param.dtype == np.float32
    assert all(value.dtype == np.float32 for key, value in optimizer.state[param].items() if key != "step")


def test_params_without_gradient_are_skipped_and_get_no_state(device):
    (first, second), _ = _params(device, [np.ones(2), np.ones(3)])
    optimizer = optim.SGD([first, second], lr=0.1, momentum=0.9)
    first.grad = minseg.Tensor(minseg.to_device(np.ones(2), device))
    optimizer.step()
    np.testing.assert_array_equal(second.numpy(), np.ones(3))
    assert second not in optimizer.state and first in optimizer.state


def test_zero_grad_sets_none_or_zeros(device):
    (param,), _ = _params(device, [np.ones(3)])
    optimizer = optim.SGD([param], lr=0.1)
    param.grad = minseg.Tensor(minseg.to_device(np.ones(3), device))
    optimizer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(param.grad.numpy(), np.zeros(3))
    optimizer.zero_grad()
    assert param.grad is None


def test_step_runs_the_closure_with_grad_enabled(device):
    (param,), _ = _params(device, [np.array([3.0])])
    optimizer = optim.SGD([param], lr=0.5)

    def closure():
        optimizer.zero_grad()
        loss = (param * param).sum()
        loss.backward()
        return loss

    with minseg.no_grad():
        loss = optimizer.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_array_equal(param.numpy(), [0.0])  # 3 − 0.5·6


def test_add_param_group_takes_defaults(device):
    (first, second), _ = _params(device, [np.ones(2), np.ones(3)])
    optimizer = optim.SGD([first], lr=0.1, momentum=0.9)
    optimizer.add_param_group({"params": second, "lr": 0.01})
    assert optimizer.param_groups[1]["params"] == [second]
    assert optimizer.param_groups[1]["lr"] == 0.01 and optimizer.param_groups[1]["momentum"] == 0.9


# ---------------------------------------------------------------- schedules vs torch
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedule_matches_torch_at_every_step(schedule, device):
    ours, theirs = _params(device)
    optimizer, twin = optim.SGD(_groups(ours)), torch.optim.SGD(_groups(theirs))
    scheduler = SCHEDULES[schedule](lr_scheduler, optimizer)
    twin_scheduler = SCHEDULES[schedule](torch.optim.lr_scheduler, twin)
    for step in range(30):
        np.testing.assert_allclose(scheduler.get_last_lr(), twin_scheduler.get_last_lr(), rtol=RTOL, atol=0,
                                   err_msg=f"lr after {step} scheduler steps")
        assert scheduler.get_last_lr() == _lrs(optimizer)
        assert scheduler.last_epoch == twin_scheduler.last_epoch
        optimizer.step()  # no gradients: nothing moves, but the call order is the documented one
        twin.step()
        scheduler.step()
        twin_scheduler.step()


@pytest.mark.parametrize("name,options,schedule", [
    ("Adam", {}, "warmup-then-poly"),
    ("AdamW", dict(amsgrad=True), "cosine-past-T_max"),
    ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=1e-3), "linear-step-cosine"),
])
def test_schedule_drives_optimizer_like_torch(name, options, schedule, device):
    ours, theirs = _params(device)
    optimizer = getattr(optim, name)(_groups(ours), **options)
    twin = getattr(torch.optim, name)(_groups(theirs), foreach=False, **options)
    scheduler = SCHEDULES[schedule](lr_scheduler, optimizer)
    twin_scheduler = SCHEDULES[schedule](torch.optim.lr_scheduler, twin)
    for grads in _gradients(STEPS):
        np.testing.assert_allclose(_lrs(optimizer), _lrs(twin), rtol=RTOL, atol=0)
        _set_grads(ours, grads, device)
        _set_grads(theirs, grads)
        optimizer.step()
        twin.step()
        scheduler.step()
        twin_scheduler.step()
    _assert_params_close(ours, theirs)


# ---------------------------------------------------------------- state_dict round trip
ROUND_TRIPS = [
    ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=1e-4), "warmup-then-poly"),
    ("Adam", dict(amsgrad=True, weight_decay=1e-3), "linear-step-cosine"),
    ("AdamW", {}, "step"),
]


def _build(name, options, schedule, params):
    optimizer = getattr(optim, name)(_groups(params), **options)
    return optimizer, SCHEDULES[schedule](lr_scheduler, optimizer)


def _train(optimizer, scheduler, params, gradients, device):
    for grads in gradients:
        _set_grads(params, grads, device)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name,options,schedule", ROUND_TRIPS)
def test_checkpoint_round_trip_continues_bit_exactly(name, options, schedule, device, tmp_path):
    gradients = _gradients(20)
    straight, _ = _params(device)
    straight_optimizer, straight_scheduler = _build(name, options, schedule, straight)
    _train(straight_optimizer, straight_scheduler, straight, gradients, device)

    first_half, _ = _params(device)
    optimizer, scheduler = _build(name, options, schedule, first_half)
    _train(optimizer, scheduler, first_half, gradients[:10], device)
    path = tmp_path / "checkpoint.npz"
    minseg.save({"params": [p.data for p in first_half], "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict()}, path)

    checkpoint = minseg.load(path)  # NumPy arrays and Python numbers, read without pickle
    resumed, _ = _params(device, checkpoint["params"])
    optimizer, scheduler = _build(name, options, schedule, resumed)  # scheduler first, then the states
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    _train(optimizer, scheduler, resumed, gradients[10:], device)

    for mine, expected in zip(resumed, straight):
        np.testing.assert_array_equal(mine.numpy(), expected.numpy())
        assert mine.device == expected.device
    assert _lrs(optimizer) == _lrs(straight_optimizer)
    assert scheduler.get_last_lr() == straight_scheduler.get_last_lr()


def test_state_dict_is_a_snapshot_and_load_copies(device):
    (param,), _ = _params(device, [np.ones(3)])
    optimizer = optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = minseg.Tensor(minseg.to_device(np.ones(3), device))
    optimizer.step()
    saved = optimizer.state_dict()
    optimizer.step()
    np.testing.assert_array_equal(minseg.to_device(saved["state"][0]["momentum_buffer"], "cpu"), np.ones(3))
    optimizer.load_state_dict(saved)
    optimizer.step()
    np.testing.assert_array_equal(minseg.to_device(saved["state"][0]["momentum_buffer"], "cpu"), np.ones(3))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("build,message", [
    (lambda p: optim.SGD(p, lr=-0.1), "lr=-0.1"),
    (lambda p: optim.SGD(p, momentum=-0.5), "momentum=-0.5"),
    (lambda p: optim.SGD(p, weight_decay=-1e-4), "weight_decay=-0.0001"),
    (lambda p: optim.SGD(p, nesterov=True), "nesterov.*momentum=0"),
    (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "nesterov.*dampening=0.1"),
    (lambda p: optim.SGD([{"params": p, "lr": -1.0}]), "lr=-1.0"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"betas\[0\]=1.0"),
    (lambda p: optim.Adam(p, betas=(0.9, -0.1)), r"betas\[1\]=-0.1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "eps=-1e-08"),
    (lambda p: optim.AdamW(p, lr=-1e-3), "lr=-0.001"),
    (lambda p: optim.SGD([]), "empty parameter list"),
    (lambda p: optim.SGD(p + p), "more than once"),
    (lambda p: optim.SGD([p[0] * 2.0]), "non-leaf"),
])
def test_invalid_optimizer_arguments_raise_value_error(build, message, device):
    params, _ = _params(device)
    with pytest.raises(ValueError, match=message):
        build(params)


def test_invalid_param_containers_raise_type_error(device):
    params, _ = _params(device)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(params[0])
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD([{"params": set(params)}])


def test_load_state_dict_checks_group_sizes(device):
    params, _ = _params(device)
    saved = optim.SGD(_groups(params)).state_dict()
    with pytest.raises(ValueError, match="2 parameter groups; this optimizer has 1"):
        optim.SGD(params).load_state_dict(saved)
    with pytest.raises(ValueError, match="group 0 .* 2 parameters; this optimizer's group 0 has 1"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(saved)


@pytest.mark.parametrize("build,message", [
    (lambda opt: lr_scheduler.StepLR(opt, step_size=0), "step_size=0"),
    (lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=0), "T_max=0"),
    (lambda opt: lr_scheduler.PolynomialLR(opt, total_iters=0), "total_iters=0"),
    (lambda opt: lr_scheduler.LinearLR(opt, start_factor=0.0), "start_factor=0.0"),
    (lambda opt: lr_scheduler.LinearLR(opt, end_factor=1.5), "end_factor=1.5"),
    (lambda opt: lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearLR(opt)], milestones=[3]), "milestones=.3."),
    (lambda opt: lr_scheduler.SequentialLR(opt, [], milestones=[]), "at least one"),
    (lambda opt: lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(optim.SGD([minseg.ones(1)]), 2)], []),
     "different optimizer"),
])
def test_invalid_schedule_arguments_raise_value_error(build, message, device):
    params, _ = _params(device)
    with pytest.raises(ValueError, match=message):
        build(optim.SGD(params))


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 2)
