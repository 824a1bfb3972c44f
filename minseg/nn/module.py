"""``Module`` and ``Parameter``: the PyTorch way of bundling tensors with the code that uses them.

A ``Module`` registers what is assigned to it: a ``Parameter`` (a tensor the optimizer updates), a
sub-module, or a buffer (state that is saved but not trained, e.g. batch norm's running mean). From
those registrations it derives everything else: ``parameters()``, ``state_dict()`` with PyTorch's dotted
key names (``encoder.0.conv.weight``), ``train()``/``eval()``, ``to(device)`` and ``zero_grad()``.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..core.autograd import Tensor
from ..core.backend import get_array_module, to_device

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A tensor that is a trainable part of a module (``requires_grad=True`` by default)."""

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _as_array(value):
    """A state-dict value (minseg Tensor, NumPy/CuPy array, torch tensor, number) as a raw array."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    xp = get_array_module(value)
    return value if isinstance(value, xp.ndarray) else np.asarray(value)


class Module:
    """Base class of every layer and model. Subclasses set attributes in ``__init__`` and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---------------------------------------------------------------- registration
    def __setattr__(self, name, value):
        """As in PyTorch: a Parameter or Module registers under ``name``; a name already registered keeps
        its kind (a parameter or child accepts only None, a buffer a Tensor or None); anything else is a
        plain attribute."""
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ before assigning {name!r}")
        if isinstance(value, (Parameter, Module)):
            self._forget(name)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
            return
        for registry, allowed in ((self._parameters, "Parameter"), (self._modules, "Module"),
                                  (self._buffers, "Tensor")):
            if name in registry:
                if value is not None and not (registry is self._buffers and isinstance(value, Tensor)):
                    raise TypeError(f"cannot assign {type(value).__name__} to {name!r} of {type(self).__name__}: "
                                    f"it is registered as a {allowed} ({allowed} or None expected)")
                registry[name] = value
                return
        object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        """Drop every registration and plain attribute called ``name``."""
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails: look in the registries
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a Parameter, or None for an absent optional parameter such as a bias)."""
        if param is None:
            self._forget(name)
            self._parameters[name] = None
        else:
            setattr(self, name, param if isinstance(param, Parameter) else Parameter(param))

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register non-trained state; ``persistent=False`` keeps it out of the state dict."""
        self._forget(name)
        self._buffers[name] = tensor if tensor is None or isinstance(tensor, Tensor) else Tensor(tensor)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None; got {type(module).__name__}")
        if name not in self._modules:
            self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # ---------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, depth first, each once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, module) for name, module in self._modules.items() if module is not None)

    def children(self):
        return (module for _, module in self.named_children())

    def _named_members(self, registry: str, recurse: bool):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for module_name, module in modules:
            for name, member in getattr(module, registry).items():
                if member is None or id(member) in seen:
                    continue
                seen.add(id(member))
                yield (f"{module_name}.{name}" if module_name else name), member

    def named_parameters(self, recurse: bool = True):
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True):
        return (param for _, param in self.named_parameters(recurse))

    def named_buffers(self, recurse: bool = True):
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True):
        return (buffer for _, buffer in self.named_buffers(recurse))

    def apply(self, fn):
        """Call ``fn`` on every sub-module and then on this one (as ``torch.nn.Module.apply``)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---------------------------------------------------------------- state
    def state_dict(self, destination=None, prefix: str = "") -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name, as tensors that share memory with the module.

        Each module lists its own parameters, then its buffers, then its children's entries. As in PyTorch,
        a module reachable under two names (shared weights) appears under both.
        """
        state = OrderedDict() if destination is None else destination
        for name, param in self._parameters.items():
            if param is not None:
                state[prefix + name] = param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent:
                state[prefix + name] = buffer.detach()
        for name, child in self.named_children():
            child.state_dict(state, f"{prefix}{name}.")
        return state

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values into this module's parameters and buffers in place (keeping their device and dtype).

        Values may be minseg tensors, NumPy/CuPy arrays or torch tensors — a torch module's
        ``state_dict()`` loads into the matching minseg module. With ``strict`` (default) any missing or
        unexpected key, and always any shape mismatch, raises an error that lists them.
        """
        own = self.state_dict()
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        mismatched = []
        for key, target in own.items():
            if key in state_dict:
                value = _as_array(state_dict[key])
                if tuple(value.shape) != target.shape:
                    mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {target.shape}")
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError(f"load_state_dict into {type(self).__name__} failed: " + " | ".join(problems))
        for key, target in own.items():
            if key in state_dict:
                value = to_device(_as_array(state_dict[key]), target.device)
                target.data[...] = value.astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- modes and placement
    def train(self, mode: bool = True) -> "Module":
        """Set training mode here and, through each child's own ``train`` (so overrides run), below."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool; got {mode!r}")
        object.__setattr__(self, "training", mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad.data[...] = 0

    def to(self, device=None, dtype=None) -> "Module":
        """Move (and/or cast floating-point) parameters and buffers in place; returns ``self``."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device  # module.to(np.float64)
        members = list(self.parameters()) + list(self.buffers())
        for tensor in members:
            data = tensor.data
            if dtype is not None and np.issubdtype(data.dtype, np.floating):
                data = data.astype(dtype)
            if device is not None:
                data = to_device(data, device)
            tensor.data = data
            if tensor.grad is not None:
                tensor.grad = Tensor(to_device(tensor.grad.data.astype(data.dtype), tensor.device))
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # ---------------------------------------------------------------- calling and printing
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """One line of settings shown in ``repr`` (override in layers)."""
        return ""

    def __repr__(self) -> str:
        """PyTorch's layout: ``Name(extra)`` for a leaf, else one indented line per setting and child."""
        extra_lines = self.extra_repr().split("\n") if self.extra_repr() else []
        child_lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        if not child_lines and len(extra_lines) <= 1:
            return f"{type(self).__name__}({''.join(extra_lines)})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(extra_lines + child_lines) + "\n)"
