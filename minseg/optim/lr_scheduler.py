"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s names and calling convention.

Build the scheduler after the optimizer, then call ``scheduler.step()`` once per iteration (or epoch)
after ``optimizer.step()``. The constructor records each group's starting lr as ``group["initial_lr"]``
(the ``base_lrs``) and sets the lr for ``last_epoch = 0``; every ``step()`` advances ``last_epoch`` and
writes the new lr into each group. ``get_last_lr()`` returns what was set last.

Every schedule here is computed in closed form from ``base_lrs`` and ``last_epoch`` (PyTorch's
``_get_closed_form_lr``), where PyTorch's ``step()`` multiplies the current lr by a ratio; the two agree
to a few units in the last place (at most 5e-15 relative in the tests). One consequence: an lr edited
by hand in a param group is overwritten at the next ``step()`` rather than scaled from.

Chapter 7, §7.4.5, counts the training schedule among DeepLab's practical trade-offs; the DeepLab
papers train with the poly schedule (``PolyLR``).

Linear warmup followed by poly decay, the usual DeepLab-style recipe::

    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    warmup = LinearLR(optimizer, start_factor=0.1, total_iters=500)
    poly = PolyLR(optimizer, total_iters=30_000 - 500)
    scheduler = SequentialLR(optimizer, [warmup, poly], milestones=[500])
    for batch in batches:
        ...; optimizer.step(); scheduler.step()
"""

from __future__ import annotations

import math
from bisect import bisect_right

from .optimizer import Optimizer, _require


class LRScheduler:
    """Base class: subclasses implement ``get_lr()``, the lrs at ``last_epoch`` from ``base_lrs``."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def get_lr(self) -> list:
        raise NotImplementedError

    def get_last_lr(self) -> list:
        """The lr of each parameter group set by the latest ``step()`` (or the constructor)."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one iteration (or epoch) and set the new lr in every parameter group."""
        self._set_epoch(self.last_epoch + 1)

    def _set_epoch(self, epoch: int) -> None:
        self.last_epoch = epoch
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (numbers and lists of numbers), as in PyTorch."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` returned; build the scheduler, then load the optimizer's state, then this."""
        self.__dict__.update({key: list(value) if isinstance(value, list) else value
                              for key, value in state_dict.items()})


class StepLR(LRScheduler):
    """Step decay: lr = base_lr · gamma^⌊last_epoch / step_size⌋."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        _require(int(step_size) == step_size and step_size >= 1,
                 f"invalid step_size={step_size}: must be a positive integer")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing (SGDR without restarts): lr = eta_min + (base_lr − eta_min)·(1 + cos(π·t/T_max))/2.

    Past ``T_max`` the cosine keeps going, so the lr climbs back up over the next ``T_max`` steps, as in
    PyTorch.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        _require(T_max > 0, f"invalid T_max={T_max}: must be > 0")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self):
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Polynomial decay to zero: lr = base_lr · (1 − min(t, total_iters)/total_iters)^power."""

    def __init__(self, optimizer, total_iters=5, power=1.0):
        _require(total_iters > 0, f"invalid total_iters={total_iters}: must be > 0")
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer)

    def get_lr(self):
        factor = (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
        return [base_lr * factor for base_lr in self.base_lrs]


class PolyLR(PolynomialLR):
    """DeepLab's "poly" schedule: lr = base_lr · (1 − iter/max_iter)^0.9, stepped once per iteration.

    ``PolynomialLR`` with DeepLab's ``power=0.9``; ``total_iters`` is DeepLab's ``max_iter``.
    """

    def __init__(self, optimizer, total_iters, power=0.9):
        super().__init__(optimizer, total_iters, power)


class LinearLR(LRScheduler):
    """Linear ramp of the factor: lr = base_lr · (start + (end − start)·min(t, total_iters)/total_iters).

    With ``start_factor < 1 = end_factor`` this is PyTorch's linear warmup.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        _require(0 < start_factor <= 1, f"invalid start_factor={start_factor}: must be in (0, 1]")
        _require(0 <= end_factor <= 1, f"invalid end_factor={end_factor}: must be in [0, 1]")
        _require(total_iters > 0, f"invalid total_iters={total_iters}: must be > 0")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self):
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class SequentialLR(LRScheduler):
    """Hand over from one schedule to the next at each milestone: ``schedulers[i]`` runs from ``milestones[i-1]``.

    As in PyTorch, each scheduler counts its own steps from 0 when its turn starts, so a warmup of
    ``w`` steps followed by ``PolyLR(total_iters=n)`` reaches lr 0 at step ``w + n``.
    """

    def __init__(self, optimizer, schedulers, milestones):
        schedulers, milestones = list(schedulers), list(milestones)
        _require(len(schedulers) >= 1, "SequentialLR needs at least one scheduler; got none")
        for i, scheduler in enumerate(schedulers):
            _require(getattr(scheduler, "optimizer", None) is optimizer,
                     f"schedulers[{i}] ({type(scheduler).__name__}) drives a different optimizer; "
                     "all schedulers must belong to the SequentialLR's optimizer")
        _require(len(milestones) == len(schedulers) - 1,
                 f"SequentialLR needs one milestone fewer than schedulers; got {len(schedulers)} schedulers "
                 f"and milestones={milestones}")
        self.optimizer = optimizer
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = 0
        for scheduler in schedulers:  # undo the step each constructor took; only the first one starts now
            scheduler.last_epoch -= 1
        first = schedulers[bisect_right(milestones, 0)]
        first.step()
        self._last_lr = first.get_last_lr()

    def step(self):
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._set_epoch(0)  # this scheduler's turn begins: its own count restarts at 0
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        state = {key: value for key, value in super().state_dict().items() if key != "_schedulers"}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "_schedulers"})
        for scheduler, saved in zip(self._schedulers, state_dict["_schedulers"]):
            scheduler.load_state_dict(saved)
