"""Optimizers with PyTorch's names, defaults, update formulas and ``state_dict`` layout: SGD, Adam, AdamW.

An optimizer holds ``param_groups``, a list of dicts that each carry ``"params"`` (a list of leaf
tensors) and that group's hyper-parameters, and ``state``, a dict from parameter to its running
buffers. ``step()`` reads every ``param.grad`` and updates ``param.data`` in place — raw NumPy/CuPy
arithmetic, so no graph is built and the same code runs on the CPU and on a GPU. Parameters whose
``grad`` is ``None`` are skipped and keep their state untouched.

``state_dict()`` is plain data (arrays and Python numbers, parameters referred to by their position
across all groups, as in PyTorch), so ``minseg.save`` writes it without pickle and ``load_state_dict``
continues training bit for bit. Training end to end with these is what §7.2.3 of chapter 7 describes.
"""

from __future__ import annotations

from ..core.autograd import Tensor, enable_grad
from ..core.backend import get_array_module, to_device


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

    ``params`` is an iterable of tensors, or of dicts ``{"params": [...], "lr": ..., ...}`` whose
    missing hyper-parameters are taken from ``defaults``. Subclasses implement ``_check(group)`` (raise
    ``ValueError`` for an invalid hyper-parameter) and ``_update(group)`` (one step for one group).
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of tensors or of dicts; got a single Tensor "
                            "(wrap it in a list: [param])")
        self.defaults = dict(defaults)
        self._check(self.defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _check(self, group: dict) -> None:
        raise NotImplementedError

    def _update(self, group: dict) -> None:
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        """Append a group; hyper-parameters it does not set come from the optimizer's defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict; got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("parameters must be in an ordered collection (a list), not a set: a set's order "
                            "changes between runs and would scramble state_dict()")
        params = list(params)
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"an optimizer can only optimize Tensors; got {type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed by an op); optimize the "
                                 "leaves it was computed from")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear more than once (within a group or in several groups)")
        group = {**self.defaults, **param_group, "params": params}
        self._check(group)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none``), or fill it with zeros in place."""
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` (optional) recomputes and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update(group)
        return loss

    @staticmethod
    def _params_with_grad(group: dict) -> list:
        """``(param, grad)`` for each parameter of ``group`` that has a gradient (``grad`` as a raw array)."""
        return [(param, param.grad.data) for param in group["params"] if param.grad is not None]

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array | number}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered in group order, as in PyTorch. Arrays are copies (PyTorch hands out
        references), so the result is a snapshot that later steps do not change.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            for param in group["params"]:
                index[id(param)] = len(index)
            groups.append({**group, "params": [index[id(p)] for p in group["params"]]})
        state = {index[id(param)]: {name: _copy(value) for name, value in buffers.items()}
                 for param, buffers in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` into an optimizer over the same parameters.

        Arrays are copied onto each parameter's device and cast to its dtype, so a checkpoint read back
        as NumPy arrays resumes on a GPU too.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups; "
                             f"this optimizer has {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"parameter group {i} of the loaded state dict has {len(saved['params'])} "
                                 f"parameters; this optimizer's group {i} has {len(group['params'])}")
        params = {}
        for saved, group in zip(saved_groups, self.param_groups):
            params.update(zip(saved["params"], group["params"]))
        self.state = {params[int(i)]: {name: _restore(name, value, params[int(i)]) for name, value in buffers.items()}
                      for i, buffers in state_dict["state"].items()}
        self.param_groups = [{**saved, "params": group["params"]}
                             for saved, group in zip(saved_groups, self.param_groups)]


def _copy(value):
    return value.copy() if hasattr(value, "shape") else value


def _restore(name: str, value, param: Tensor):
    """A saved state entry ready for ``param``: ``step`` counts stay integers, arrays follow the parameter."""
    if name == "step":
        return int(value)
    if not hasattr(value, "shape"):
        return value
    value = to_device(value, param.device)
    return value.astype(param.dtype, copy=True)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov) and L2 weight decay.

    Per step, with ``g`` the gradient (negated when ``maximize``)::

        g ← g + weight_decay·θ
        b ← g on the first step, else momentum·b + (1 − dampening)·g     (only when momentum ≠ 0)
        θ ← θ − lr·(g + momentum·b if nesterov else b)

    The first step copies ``g`` into the buffer without dampening, exactly as PyTorch does.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _check(self, group):
        _require(group["lr"] >= 0, f"invalid lr={group['lr']}: must be >= 0")
        _require(group["momentum"] >= 0, f"invalid momentum={group['momentum']}: must be >= 0")
        _require(group["weight_decay"] >= 0, f"invalid weight_decay={group['weight_decay']}: must be >= 0")
        _require(not group["nesterov"] or (group["momentum"] > 0 and group["dampening"] == 0),
                 f"nesterov=True needs momentum > 0 and dampening = 0; got momentum={group['momentum']}, "
                 f"dampening={group['dampening']}")

    def _update(self, group):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        for param, grad in self._params_with_grad(group):
            if group["maximize"]:
                grad = -grad
            if group["weight_decay"] != 0:
                grad = grad + group["weight_decay"] * param.data
            if momentum != 0:
                state = self.state.setdefault(param, {})
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = grad.copy()
                else:
                    buffer *= momentum
                    buffer += (1 - dampening) * grad
                grad = grad + momentum * buffer if group["nesterov"] else buffer
            param.data -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional AMSGrad; PyTorch's argument order, defaults and formulas.

    Per step ``t`` (from 1), with ``g`` the gradient (negated when ``maximize``)::

        g ← g + weight_decay·θ              (L2; AdamW instead decays θ ← θ·(1 − lr·weight_decay))
        m ← β1·m + (1 − β1)·g     v ← β2·v + (1 − β2)·g²     (AMSGrad: v̂ ← max(v̂, v), used for v)
        θ ← θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _check(self, group):
        beta1, beta2 = group["betas"]
        _require(group["lr"] >= 0, f"invalid lr={group['lr']}: must be >= 0")
        _require(group["eps"] >= 0, f"invalid eps={group['eps']}: must be >= 0")
        _require(0 <= beta1 < 1, f"invalid betas[0]={beta1}: must be in [0, 1)")
        _require(0 <= beta2 < 1, f"invalid betas[1]={beta2}: must be in [0, 1)")
        _require(group["weight_decay"] >= 0, f"invalid weight_decay={group['weight_decay']}: must be >= 0")

    def _update(self, group):
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        for param, grad in self._params_with_grad(group):
            xp = get_array_module(grad)
            data, state = param.data, self.state.setdefault(param, {})
            if not state:
                state.update(step=0, exp_avg=xp.zeros_like(data), exp_avg_sq=xp.zeros_like(data))
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = xp.zeros_like(data)
            state["step"] += 1
            if group["maximize"]:
                grad = -grad
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    data *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * data
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg += (1 - beta1) * (grad - exp_avg)  # β1·m + (1 − β1)·g, written as PyTorch's lerp
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            if group["amsgrad"]:
                xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                exp_avg_sq = state["max_exp_avg_sq"]
            step_size = lr / (1 - beta1 ** state["step"])
            denominator = xp.sqrt(exp_avg_sq) / (1 - beta2 ** state["step"]) ** 0.5 + eps
            data -= step_size * (exp_avg / denominator)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): θ ← θ·(1 − lr·weight_decay) before the Adam step.

    The decay never enters ``m`` or ``v``; the default ``weight_decay`` is 1e-2, as in PyTorch.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
