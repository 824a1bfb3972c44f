"""A tiny reverse-mode autograd engine: ``Tensor``, ``Function``, ``backward``, ``set_grad_enabled`` (and its two
faces ``no_grad`` / ``enable_grad``). The factories (``zeros``, ``randn``…) are in ``factories.py``.

A ``Tensor`` wraps a NumPy or CuPy array. Every differentiable op is a ``Function`` subclass with

* ``forward(self, *arrays, **params)`` – computes the output from raw arrays and keeps (via
  ``save_for_backward``) only what its backward needs;
* ``backward(self, grad_output)`` – returns one gradient per input (``None`` for inputs that need none,
  which ``self.needs_input_grad`` tells it in advance).

Calling ``SomeFunction.apply(x, y, **params)`` runs forward and, when gradients are wanted, links the
output to the Function node, which links to its inputs: the graph is built as the program runs.

``Tensor.backward`` walks that graph once in reverse topological order (an explicit stack, no recursion,
so a 10,000-op chain is fine). The chain rule for a node with output ``y = f(x1, x2, ...)`` is
``dL/dxi = backward(dL/dy)[i]``; a tensor used by several nodes receives the sum of their gradients,
and a gradient that was broadcast in forward is summed back to its input's shape (``sum_to``).
As in PyTorch, saved arrays are released after backward; going back through the same graph again
raises an error unless the first call passed ``retain_graph=True``.

Operators and methods such as ``x + y`` or ``x.sum()`` are attached to ``Tensor`` by
``minseg.functional`` (see ``functional/__init__.py``), which keeps this module below the ops it runs.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np

from .backend import canonical_device, device_of, get_array_module, to_device

_grad_enabled = True


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    """The one switch of graph building: inside, ops record a graph for backward iff ``mode`` is true.
    The previous state comes back on leaving, so blocks nest. Usable as a decorator too."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, bool(mode)
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """``set_grad_enabled(False)``: ops build no graph and outputs need no gradient (inference, §7.7)."""
    return set_grad_enabled(False)


def enable_grad():
    """``set_grad_enabled(True)``: graph building back on inside a ``no_grad`` block."""
    return set_grad_enabled(True)


def is_grad_enabled() -> bool:
    return _grad_enabled


def sum_to(grad, shape):
    """Sum a broadcast gradient back to ``shape``: drop leading axes, then sum axes that were size 1."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    if leading:
        grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def _is_float(dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


class Tensor:
    """An n-dimensional array with an optional gradient, on the CPU (NumPy) or a GPU (CuPy)."""

    __array_priority__ = 1000  # numpy_array * tensor calls Tensor.__rmul__, not NumPy's loop
    __hash__ = object.__hash__  # == is elementwise, so hash by identity

    def __init__(self, data, requires_grad: bool = False):
        xp = get_array_module(data)
        self.data = data if isinstance(data, xp.ndarray) else xp.asarray(data)
        self.grad: Tensor | None = None
        self._ctx: Function | None = None  # the node that produced this tensor (None for leaves)
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---------------------------------------------------------------- gradients
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not _is_float(self.dtype):
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor; got dtype {self.dtype} "
                f"(shape {self.shape}). Convert it first, e.g. x.float()."
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self.requires_grad = requires_grad
        return self

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (shares memory, like PyTorch)."""
        return Tensor(self.data)

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) · grad into ``.grad`` of every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad (no graph was built)")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-element output; got shape {self.shape}. "
                    "Pass grad= with the output's shape."
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(grad.shape)} but the output has shape {self.shape}")
            if get_array_module(grad) is not xp:
                raise ValueError(f"backward: grad is on {device_of(grad)} but the output is on {self.device}")
            grad = grad.astype(self.dtype, copy=False)
        if self._ctx is None:
            _accumulate_leaf(self, grad)
            return
        _run_backward(self._ctx, grad, retain_graph)

    # ---------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """A NumPy array with this tensor's values (copied from the GPU if needed)."""
        return to_device(self.data, "cpu")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a single-element tensor; got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device=None, dtype=None) -> "Tensor":
        """Move to ``device`` and/or cast to ``dtype`` (differentiable; ``x.to("cuda")``, ``x.to(np.float64)``)."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device  # x.to(np.float64)
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = Cast.apply(out, dtype=np.dtype(dtype))
        if device is not None and canonical_device(device) != out.device:
            out = ToDevice.apply(out, device=device)
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Tensor":
        return self.to(f"cuda:{index}")

    def float(self) -> "Tensor":
        return self.to(dtype=np.float32)

    def double(self) -> "Tensor":
        return self.to(dtype=np.float64)

    def long(self) -> "Tensor":
        return self.to(dtype=np.int64)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", precision=4)
        extras = [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{type(self._ctx).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())


def raw(value):
    """The array behind a Tensor; anything else is returned unchanged."""
    return value.data if isinstance(value, Tensor) else value


def _accumulate_leaf(leaf: Tensor, grad) -> None:
    """``leaf.grad += grad`` (the first gradient is copied: it may alias another node's array)."""
    if grad.dtype != leaf.dtype:
        grad = grad.astype(leaf.dtype)
    if leaf.grad is None:
        leaf.grad = Tensor(grad.copy())
    else:
        leaf.grad.data += grad


def topological_order(root: "Function") -> list:
    """The nodes reachable from ``root``, each listed before the nodes that produced its inputs (§7.1).

    Reverse post-order of an iterative depth-first search, so a node's gradient is complete (every
    consumer has added its share) before ``backward`` reaches it, and graphs deeper than Python's
    recursion limit still sort. ``Tensor.backward`` walks this list; it is public so a reader can print it.
    """
    finished, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            finished.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for parent in node.inputs:
            if parent is not None and parent._ctx is not None and parent._ctx not in seen:
                stack.append((parent._ctx, False))
    finished.reverse()  # reverse post-order: every consumer comes before its producers
    return finished


def _run_backward(root: "Function", grad, retain_graph: bool) -> None:
    pending = {root: grad}  # node -> gradient of the loss with respect to that node's output
    for node in topological_order(root):
        grad_output = pending.pop(node, None)
        if grad_output is None:  # no path from the root carried a gradient here
            continue
        if node.freed:
            raise RuntimeError(
                f"backward through {type(node).__name__} a second time: its saved arrays were freed by the "
                "first backward. Pass retain_graph=True to the first backward() if you need to go back twice."
            )
        input_grads = node.backward(grad_output)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if not retain_graph:
            node.release()
        for parent, parent_grad in zip(node.inputs, input_grads):
            if parent is None or parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = sum_to(parent_grad, parent.shape)
            if parent._ctx is None:
                _accumulate_leaf(parent, parent_grad)
            elif parent._ctx in pending:
                pending[parent._ctx] = pending[parent._ctx] + parent_grad
            else:
                pending[parent._ctx] = parent_grad


class Function:
    """One differentiable op. Subclasses implement ``forward`` and ``backward`` on raw xp arrays."""

    _input_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        params = list(inspect.signature(cls.forward).parameters.values())[1:]
        cls._input_names = tuple(
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        )
        cls._variadic = any(p.kind == p.VAR_POSITIONAL for p in params)

    def __init__(self):
        self.inputs: tuple = ()
        self.needs_input_grad: tuple = ()
        self.saved: tuple = ()
        self.freed = False

    def save_for_backward(self, *arrays) -> None:
        self.saved = arrays

    def release(self) -> None:
        """Drop saved arrays after backward (the graph can't be walked again)."""
        self.saved = ()
        self.freed = True

    def forward(self, *arrays, **params):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def input_name(cls, position: int) -> str:
        if cls._variadic and position >= len(cls._input_names) - 1:
            return f"{cls._input_names[-1]}[{position - len(cls._input_names) + 1}]"
        return cls._input_names[position] if position < len(cls._input_names) else f"input{position}"

    @classmethod
    def apply(cls, *inputs, **params):
        """Run forward on the inputs' arrays and record the node when any input needs a gradient.

        Inputs may be Tensors, raw arrays, Python numbers (cast to the first tensor's dtype) or ``None``.
        A forward that returns a tuple makes the first element differentiable; the rest come back as
        plain tensors (e.g. the indices of a max).
        """
        tensors = [x for x in inputs if isinstance(x, Tensor)]
        check_same_device(cls.__name__, [(cls.input_name(i), x) for i, x in enumerate(inputs)])
        reference = tensors[0].data if tensors else None
        arrays = tuple(_as_array(x, reference) for x in inputs)
        node = cls()
        node.needs_input_grad = tuple(
            _grad_enabled and isinstance(x, Tensor) and x.requires_grad for x in inputs
        )
        result = node.forward(*arrays, **params)
        extras = ()
        if isinstance(result, tuple):
            result, extras = result[0], result[1:]
        out = Tensor(result)
        if any(node.needs_input_grad):
            out.requires_grad = True
            out._ctx = node
            node.inputs = tuple(_edge(x) for x in inputs)
        if extras:
            return (out,) + tuple(Tensor(e) for e in extras)
        return out


class Edge:
    """What backward needs of an input that an op produced: its node, shape and ``requires_grad`` — not
    its data. Holding the tensor itself would keep every intermediate array alive until backward ends,
    even those no backward reads (a conv's output feeding a batch norm that keeps its own copy)."""

    __slots__ = ("_ctx", "shape", "requires_grad")

    def __init__(self, tensor: Tensor):
        self._ctx, self.shape, self.requires_grad = tensor._ctx, tensor.shape, tensor.requires_grad


def _edge(value):
    """A node's link to one input: leaves stay themselves (backward accumulates into their ``.grad``)."""
    if not isinstance(value, Tensor):
        return None
    return value if value._ctx is None else Edge(value)


def _as_array(value, reference):
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (bool, int, float, np.number)) and reference is not None:
        xp = get_array_module(reference)
        dtype = reference.dtype if _is_float(reference.dtype) or isinstance(value, (bool, int)) else np.float32
        return xp.asarray(value, dtype=dtype)
    return value


def check_same_device(op_name: str, named_inputs) -> None:
    """Raise when the tensors/arrays among ``(name, value)`` pairs live on different devices."""
    placed = [
        (name, device_of(value.data if isinstance(value, Tensor) else value))
        for name, value in named_inputs
        if isinstance(value, Tensor) or (hasattr(value, "__array_interface__") and not isinstance(value, np.generic))
        or hasattr(value, "__cuda_array_interface__")
    ]  # a NumPy scalar (np.float64(2.0)) is a number, not a CPU array: it mixes with any device
    if len({device for _, device in placed}) > 1:
        where = ", ".join(f"{name} on {device}" for name, device in placed)
        raise ValueError(f"{op_name}: all tensors must be on one device; got {where}")


class Cast(Function):
    """Change dtype; the gradient is cast back to the input's dtype."""

    def forward(self, input, *, dtype):
        self.input_dtype = input.dtype
        return input.astype(dtype)

    def backward(self, grad_output):
        return grad_output.astype(self.input_dtype)


class ToDevice(Function):
    """Copy between CPU and GPU; the gradient travels back to where the input was."""

    def forward(self, input, *, device):
        self.input_device = device_of(input)
        return to_device(input, device)

    def backward(self, grad_output):
        return to_device(grad_output, self.input_device)
