"""Module bookkeeping against torch.nn.Module: names and order of parameters, buffers and sub-modules,
state_dict keys, load_state_dict's errors and return value, modes, placement, repr and the containers."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as tnn

import minseg
import minseg.nn as nn
from helpers import assert_close, repr_as_torch_prints_it


def make_model(modules, as_tensor):
    """The same nested model from either framework: ``modules`` is ``torch.nn`` or ``minseg.nn`` and
    ``as_tensor`` turns a NumPy array into that framework's tensor (for the buffers)."""

    class Head(modules.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", as_tensor(np.full(2, 0.5)))
            self.register_buffer("cache", as_tensor(np.zeros(2)), persistent=False)
            self.classify = modules.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.classify(x) * self.scale.reshape(1, 2, 1, 1)

    class Net(modules.Module):
        def __init__(self):
            super().__init__()
            self.stem = modules.Sequential(modules.Conv2d(3, 4, 3, padding=1), modules.BatchNorm2d(4), modules.ReLU())
            self.blocks = modules.ModuleList([modules.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(2)])
            self.heads = modules.ModuleDict({"seg": Head(), "aux": modules.Conv2d(4, 1, 1)})
            self.gamma = modules.Parameter(as_tensor(np.ones(1)))

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x) * self.gamma
            return self.heads["seg"](x)

    return Net()


def model_pair():
    """(ours, theirs) with torch's weights copied into ours, both float64."""
    theirs = make_model(tnn, lambda a: torch.tensor(a, dtype=torch.float32)).double()
    ours = make_model(nn, lambda a: minseg.tensor(a, dtype=np.float32))
    ours.load_state_dict(theirs.state_dict())
    return ours.double(), theirs


def names(pairs):
    return [name for name, _ in pairs]


def test_names_and_order_match_torch():
    ours, theirs = model_pair()
    assert names(ours.named_parameters()) == names(theirs.named_parameters())
    assert names(ours.named_buffers()) == names(theirs.named_buffers())
    assert names(ours.named_children()) == names(theirs.named_children())
    assert [(name, type(m).__name__) for name, m in ours.named_modules()] == \
        [(name, type(m).__name__) for name, m in theirs.named_modules()]
    assert names(ours.named_parameters(recurse=False)) == ["gamma"]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "heads.seg.cache" not in ours.state_dict()


def test_shared_modules_are_listed_once_but_saved_under_every_name():
    def tied(modules):
        shared = modules.Conv2d(2, 2, 1)
        return modules.Sequential(OrderedDict([("a", shared), ("b", modules.ReLU()), ("c", shared)]))

    ours, theirs = tied(nn), tied(tnn)
    assert names(ours.named_parameters()) == names(theirs.named_parameters()) == ["a.weight", "a.bias"]
    assert names(ours.named_modules()) == names(theirs.named_modules())
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_loading_torchs_state_dict_gives_torchs_output():
    ours, theirs = model_pair()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    assert_close(ours(minseg.tensor(x)), theirs(torch.tensor(x)), what="model output")


def test_state_dict_round_trip():
    source, _ = model_pair()
    target = make_model(nn, lambda a: minseg.tensor(a, dtype=np.float64)).double()
    x = minseg.randn(1, 3, 5, 5, dtype=np.float64)
    assert not np.allclose(source(x).numpy(), target(x).numpy())
    saved = {key: value.numpy().copy() for key, value in source.state_dict().items()}
    assert target.load_state_dict(saved) == ([], [])
    np.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_state_dict_shares_memory_and_loading_keeps_dtype_and_storage():
    layer = nn.Linear(3, 2)
    weight = layer.weight.data
    layer.state_dict()["bias"].data[...] = 7
    np.testing.assert_array_equal(layer.bias.numpy(), 7)
    layer.load_state_dict({"weight": np.ones((2, 3)), "bias": torch.zeros(2, dtype=torch.float64)})
    assert layer.weight.data is weight and layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.numpy(), 1)


def _broken_state_dicts(state):
    missing = OrderedDict((k, v) for k, v in state.items() if k not in ("stem.0.bias", "heads.aux.weight"))
    unexpected = OrderedDict(state, **{"stem.9.weight": state["gamma"], "extra": state["gamma"]})
    return missing, unexpected


def test_load_state_dict_lists_missing_and_unexpected_keys():
    ours, theirs = model_pair()
    missing, unexpected = _broken_state_dicts(theirs.state_dict())
    with pytest.raises(RuntimeError, match=r"missing keys: stem\.0\.bias, heads\.aux\.weight"):
        ours.load_state_dict(missing)
    with pytest.raises(RuntimeError, match=r"unexpected keys: stem\.9\.weight, extra"):
        ours.load_state_dict(unexpected)
    for state in (missing, unexpected):
        our_missing, our_unexpected = ours.load_state_dict(state, strict=False)
        their_missing, their_unexpected = theirs.load_state_dict(state, strict=False)
        assert our_missing == their_missing and sorted(our_unexpected) == sorted(their_unexpected)


def test_load_state_dict_reports_shape_mismatches_even_when_not_strict():
    ours, theirs = model_pair()
    state = theirs.state_dict()
    state["blocks.1.weight"] = torch.zeros(4, 4, 5, 5)
    state["heads.seg.scale"] = torch.zeros(3)
    pattern = r"blocks\.1\.weight: checkpoint \(4, 4, 5, 5\) vs model \(4, 4, 3, 3\).*heads\.seg\.scale"
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=pattern):
            ours.load_state_dict(state, strict=strict)
        with pytest.raises(RuntimeError, match="size mismatch"):
            theirs.load_state_dict(state, strict=strict)


def test_train_and_eval_reach_every_module_and_call_overrides():
    calls = []

    class Frozen(nn.Module):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(False)  # e.g. a backbone whose batch norm stays in eval mode

    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Sequential(nn.Dropout(), Frozen()))
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    assert calls == [False, True]


def test_zero_grad_and_requires_grad():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    model(minseg.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not np.any(p.grad.numpy()) for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not model(minseg.randn(4, 3)).requires_grad


def test_to_casts_floating_state_and_moves_it(device):
    ours, _ = model_pair()
    ours.float()
    ours(minseg.randn(1, 3, 4, 4)).sum().backward()
    assert ours.to(np.float64) is ours
    for name, tensor in list(ours.named_parameters()) + list(ours.named_buffers()):
        expected = np.int64 if name.endswith("num_batches_tracked") else np.float64
        assert tensor.dtype == expected, name
    assert ours.gamma.grad.dtype == np.float64 and ours.heads.aux.weight.grad is None  # aux is unused
    ours.to(device)
    assert {t.device for t in list(ours.parameters()) + list(ours.buffers())} == {device}
    out = ours(minseg.randn(1, 3, 4, 4, dtype=np.float64, device=device))
    assert out.device == device and out.dtype == np.float64


def test_repr_matches_torch():
    ours, theirs = model_pair()
    assert repr_as_torch_prints_it(repr(ours)) == repr(theirs)
    assert "(0-1): 2 x Conv2d(4, 4, kernel_size=(3, 3)" in repr(ours)


def test_assignment_keeps_registrations_like_torch():
    layer = nn.BatchNorm2d(2)
    layer.running_mean = minseg.ones(2)             # a tensor replaces a buffer and stays a buffer
    assert "running_mean" in dict(layer.named_buffers())
    layer.bias = None                               # a parameter may be set to None and is then not saved
    assert "bias" not in layer.state_dict() and "bias" in layer._parameters
    with pytest.raises(TypeError, match="registered as a Parameter"):
        layer.weight = minseg.ones(2)
    layer.weight = nn.Parameter(minseg.zeros(2))
    assert layer.state_dict()["weight"].numpy().tolist() == [0, 0]


def test_sequential_indexing_slicing_and_iteration():
    modules = [nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 1, 1)]
    seq = nn.Sequential(*modules)
    assert len(seq) == 3 and list(seq) == modules
    assert seq[0] is modules[0] and seq[-1] is modules[2]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail) == modules[1:]
    assert list(tail.state_dict()) == list(tnn.Sequential(tnn.Conv2d(1, 2, 1), tnn.ReLU(), tnn.Conv2d(2, 1, 1))[1:]
                                           .state_dict()) == ["2.weight", "2.bias"]
    named = nn.Sequential(OrderedDict([("down", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert named.act is named[1] and list(named.state_dict()) == ["down.weight", "down.bias"]
    x = minseg.randn(1, 1, 3, 3)
    np.testing.assert_array_equal(seq(x).numpy(), seq[2](seq[1](seq[0](x))).numpy())
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    layers.append(nn.Linear(2, 3))
    layers.extend([nn.Tanh()])
    layers.insert(1, nn.Identity())
    assert len(layers) == 5 and [type(m).__name__ for m in layers] == ["Linear", "Identity", "ReLU", "Linear", "Tanh"]
    assert isinstance(layers[-2], nn.Linear) and layers[-2].out_features == 3
    assert list(layers[3:].state_dict()) == ["0.weight", "0.bias"]          # a slice is renumbered, as in torch
    layers[1] = nn.Sigmoid()
    assert isinstance(layers[1], nn.Sigmoid)
    assert list(layers.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_module_dict():
    heads = nn.ModuleDict({"seg": nn.Conv2d(4, 3, 1), "edge": nn.Conv2d(4, 1, 1)})
    heads["depth"] = nn.Conv2d(4, 1, 1)
    assert list(heads) == list(heads.keys()) == ["seg", "edge", "depth"] and len(heads) == 3
    assert "edge" in heads and isinstance(heads["seg"], nn.Conv2d)
    del heads["edge"]
    assert "edge" not in heads
    assert list(heads.state_dict()) == ["seg.weight", "seg.bias", "depth.weight", "depth.bias"]
    assert [name for name, _ in heads.items()] == ["seg", "depth"]
