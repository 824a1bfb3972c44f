"""``Trainer``: the training loop of §7.2.3 — forward, per-pixel loss, backward, optimizer step — with
evaluation, progress bars, history, checkpoints and an exact resume.

What makes resuming exact: the checkpoint holds the model, optimizer and schedule state, the shared RNG
(dropout masks) and the step. The ``DataLoader`` derives the order of every epoch and every sample's
augmentation from its seed, so step ``s`` continues at epoch ``s // len(loader)``, batch
``s % len(loader)``, with the very batches it would have seen. Two steps, save, restore, two steps is
then bit for bit the same as four steps straight.

Nothing a user made is lost: checkpoints are written atomically (``minseg.save``); a non-finite loss
stops training before the bad step touches the weights, and an update that makes a weight non-finite
stops it before anything is saved, so the last checkpoint on disk is always a good one; Ctrl-C (or
SIGTERM) finishes the current step, saves a checkpoint and then stops.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time

import numpy as np
from tqdm.auto import tqdm

from ..core.autograd import no_grad
from ..core.backend import get_array_module
from ..core.random import get_rng_state, manual_seed, set_rng_state
from ..core.serialization import load, save
from .runs import write_json
from .viz import plot_history


class NonFiniteLossError(RuntimeError):
    """Raised when the training loss is NaN or infinite — the parameters and optimizer are then left as they
    were before the step (batch-norm running statistics have seen the failing forward pass) — or when an
    update made a parameter or buffer non-finite. Either way nothing is saved: the last checkpoint holds
    the state before it."""


def _batch_to(batch, device):
    return tuple(item.to(device) if hasattr(item, "to") else item for item in batch)


class Trainer:
    """Train ``model`` on ``train_loader`` with ``loss_fn(logits, target, *extras)``.

    Batches are ``(images, targets, *extras)``; extras such as U-Net's per-pixel weight maps (§7.3.4)
    travel with the batch and are passed on to the loss.

    Length: ``max_steps`` optimizer steps, or ``epochs`` passes over the loader (one of the two).
    ``scheduler.step()`` runs after every optimizer step (DeepLab's poly schedule is per iteration).
    Every ``eval_every`` steps (and at the end) the model is evaluated on ``val_loader``: the mean loss,
    plus whatever ``metrics`` computes — a factory returning an object with ``update(logits, target)``
    and ``compute() -> dict`` (e.g. ``lambda: ConfusionMatrix(num_classes)``).
    With ``out_dir``, a checkpoint is written every ``checkpoint_every`` steps and at the end, with
    ``history.json`` and ``curves.png`` beside it; ``fit(resume=True)`` continues from that checkpoint.
    Resuming with a larger ``max_steps`` extends the run: a schedule that spanned the whole run (its
    ``total_iters`` equal to the old length, as ``PolyLR(optimizer, total_iters=max_steps)``) is stretched
    to the new length, so the lr follows the schedule of a run planned that long from the start.

    The loaders must be ``minseg.data.DataLoader``s (or offer ``__len__`` and ``iterate(epoch, start_batch)``).
    """

    def __init__(self, model, loss_fn, optimizer, train_loader, *, scheduler=None, val_loader=None, metrics=None,
                 max_steps: int | None = None, epochs: int | None = None, eval_every: int | None = None,
                 checkpoint_every: int | None = None, out_dir=None, device: str = "cpu", seed: int = 0,
                 log_every: int = 1, progress: bool = True):
        if (max_steps is None) == (epochs is None):
            raise ValueError(f"Trainer: give exactly one of max_steps and epochs; got max_steps={max_steps!r}, "
                             f"epochs={epochs!r}")
        for name, value in (("max_steps", max_steps), ("epochs", epochs), ("eval_every", eval_every),
                            ("checkpoint_every", checkpoint_every), ("log_every", log_every)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Trainer: {name} must be a positive int or None; got {value!r}")
        if not hasattr(train_loader, "iterate"):
            raise TypeError("Trainer: train_loader must offer iterate(epoch, start_batch) — use minseg.data.DataLoader")
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.train_loader, self.val_loader, self.metrics = train_loader, val_loader, metrics
        self.total_steps = max_steps if max_steps is not None else epochs * len(train_loader)
        self.eval_every, self.checkpoint_every, self.log_every = eval_every, checkpoint_every, log_every
        self.out_dir, self.device, self.seed, self.progress = out_dir, device, seed, progress
        self.step = 0
        self.history = {"train": [], "eval": []}
        self._stop_requested = False
        model.to(device)

    # ---------------------------------------------------------------- files
    @property
    def checkpoint_path(self):
        return None if self.out_dir is None else os.path.join(self.out_dir, "checkpoint.npz")

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": get_rng_state(),
            "step": self.step,
            "total_steps": self.total_steps,
            "history": self.history,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            self._stretch_schedule(state.get("total_steps"))
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = state["history"]

    def _stretch_schedule(self, planned) -> None:
        """A schedule that spanned the ``planned`` run now spans ``total_steps`` (the lr is recomputed)."""
        spans_the_run = getattr(self.scheduler, "total_iters", None) == planned
        if planned is None or planned == self.total_steps or not spans_the_run:
            return
        self.scheduler.total_iters = self.total_steps
        self.scheduler.last_epoch -= 1
        self.scheduler.step()  # the same iteration again: sets each group's lr from the stretched schedule

    def save_checkpoint(self, path=None) -> str:
        """Write the full training state atomically (to ``out_dir/checkpoint.npz`` by default)."""
        path = path or self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint: no path given and the Trainer has no out_dir")
        save(self.state_dict(), path)
        self._write_history()
        return path

    def load_checkpoint(self, path=None) -> None:
        self.load_state_dict(load(path or self.checkpoint_path))

    def _write_history(self) -> None:
        if self.out_dir is None:
            return
        write_json(os.path.join(self.out_dir, "history.json"), self.history, indent=1)
        if self.history["train"]:
            plot_history(self.history, os.path.join(self.out_dir, "curves.png"))

    # ---------------------------------------------------------------- one step
    def train_step(self, batch) -> float:
        """Forward, loss, backward, optimizer and schedule step; returns the loss."""
        images, targets, *extras = _batch_to(batch, self.device)
        self.model.train()
        if hasattr(self.loss_fn, "steps"):  # a loss with a scheduled weight (CombinedLoss) follows the step count
            self.loss_fn.steps = self.step
        loss = self.loss_fn(self.model(images), targets, *extras)
        value = float(loss.item())
        if not math.isfinite(value):
            epoch, batch_index = divmod(self.step, len(self.train_loader))
            kept = (f"the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path
                    and os.path.exists(self.checkpoint_path) else "no checkpoint was written")
            raise NonFiniteLossError(f"loss is {value} at step {self.step + 1} (epoch {epoch}, batch {batch_index}); "
                                     f"training stopped before updating the weights; {kept}")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._check_finite_state()
        if self.scheduler is not None:
            self.scheduler.step()
        return value

    def _check_finite_state(self) -> None:
        """Stop, before anything is saved, when the update made a parameter or buffer NaN or infinite."""
        for name, value in self.model.state_dict().items():
            array = value.data
            if np.issubdtype(array.dtype, np.floating) and not bool(get_array_module(array).isfinite(array).all()):
                kept = (f"the last good checkpoint is {self.checkpoint_path}" if self.checkpoint_path
                        and os.path.exists(self.checkpoint_path) else "no checkpoint was written")
                raise NonFiniteLossError(f"the update of step {self.step + 1} made {name} non-finite (is the "
                                         f"learning rate {self.optimizer.param_groups[0]['lr']} too large?); "
                                         f"training stopped; {kept}")

    @no_grad()
    def evaluate(self, loader=None) -> dict:
        """Mean loss (weighted by batch size) and the metrics over ``loader`` (the validation loader)."""
        loader = loader or self.val_loader
        if loader is None:
            raise ValueError("evaluate: no loader given and the Trainer has no val_loader")
        self.model.eval()
        meter = self.metrics() if self.metrics else None
        total, count = 0.0, 0
        for batch in loader.iterate(0):
            images, targets, *extras = _batch_to(batch, self.device)
            logits = self.model(images)
            total += float(self.loss_fn(logits, targets, *extras).item()) * images.shape[0]
            count += images.shape[0]
            if meter is not None:
                meter.update(logits, targets)
        self.model.train()
        result = {"loss": total / count}
        if meter is not None:
            result.update({k: float(v) for k, v in meter.compute().items() if np.ndim(v) == 0})
        return result

    # ---------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> dict:
        """Train until ``total_steps``; returns the history. ``resume=True`` starts from the checkpoint."""
        if resume:
            if self.checkpoint_path is None or not os.path.exists(self.checkpoint_path):
                raise FileNotFoundError(f"fit(resume=True): no checkpoint at {self.checkpoint_path!r}")
            self.load_checkpoint()
            if self.step > self.total_steps:
                raise ValueError(f"fit(resume=True): the checkpoint is at step {self.step}, past the "
                                 f"{self.total_steps} steps this Trainer runs")
        else:
            manual_seed(self.seed)
        with self._stop_after_step_on_ctrl_c(), tqdm(total=self.total_steps, initial=self.step, disable=not self.progress,
                                                desc="train", unit="step", dynamic_ncols=True) as bar:
            steps_per_epoch = len(self.train_loader)
            while self.step < self.total_steps:
                epoch, start = divmod(self.step, steps_per_epoch)
                for batch in self.train_loader.iterate(epoch, start):
                    started = time.perf_counter()
                    loss = self.train_step(batch)
                    self.step += 1
                    self._after_step(loss, time.perf_counter() - started, bar)
                    if self.step >= self.total_steps:
                        break
        if self.val_loader is not None and (not self.history["eval"] or self.history["eval"][-1]["step"] != self.step):
            self._record_evaluation(bar=None)
        if self.out_dir is not None:
            self.save_checkpoint()
        return self.history

    def _after_step(self, loss: float, seconds: float, bar) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        if self.step % self.log_every == 0 or self.step == self.total_steps:
            self.history["train"].append({"step": self.step, "loss": loss, "lr": lr, "seconds": seconds})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if self.eval_every and self.step % self.eval_every == 0 and self.val_loader is not None:
            self._record_evaluation(bar)
        if self.out_dir is not None and self.checkpoint_every and self.step % self.checkpoint_every == 0:
            self.save_checkpoint()
        if self._stop_requested:
            if self.out_dir is not None:
                path = self.save_checkpoint()
                print(f"\n{self._stop_requested} at step {self.step}: checkpoint saved to {path} (training can "
                      "resume from it)")
            raise KeyboardInterrupt

    def _record_evaluation(self, bar) -> None:
        result = {"step": self.step, **self.evaluate()}
        self.history["eval"].append(result)
        if bar is not None and self.progress:
            bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "step"))

    @contextlib.contextmanager
    def _stop_after_step_on_ctrl_c(self):
        """While training, Ctrl-C (SIGINT) or SIGTERM only asks the loop to stop after the current step (it
        then saves and raises KeyboardInterrupt); the previous handlers come back afterwards."""
        def request_stop(signum, frame):
            name = signal.Signals(signum).name
            self._stop_requested = "interrupted" if signum == signal.SIGINT else f"stopped by {name}"

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self._stop_requested = False
