"""Figures: training curves (more plots for the notebooks join here). Figures are drawn on a bare
``matplotlib.figure.Figure`` (no pyplot), so they work on machines without a display and importing this
module never changes the caller's backend (a notebook's ``%matplotlib inline`` keeps working)."""

from __future__ import annotations

import os

from matplotlib.figure import Figure


def plot_history(history: dict, path) -> str:
    """Plot training loss, validation loss/metrics and the learning rate from a ``Trainer`` history.

    ``history`` holds ``"train"`` and ``"eval"`` lists of per-step records (dicts with ``"step"``).
    Writes a PNG at ``path`` and returns the path.
    """
    train, evaluation = history.get("train", []), history.get("eval", [])
    metric_names = sorted({k for record in evaluation for k in record if k not in ("step", "loss")})
    panels = 2 + bool(metric_names)
    figure = Figure(figsize=(4.5 * panels, 3.6))
    axes = figure.subplots(1, panels)
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], label="train", linewidth=1)
    if evaluation:
        axes[0].plot([r["step"] for r in evaluation], [r["loss"] for r in evaluation], "o-", label="validation")
    axes[0].set(title="loss", xlabel="step", yscale="log")
    axes[0].legend()
    axes[1].plot(steps, [r["lr"] for r in train])
    axes[1].set(title="learning rate", xlabel="step")
    if metric_names:
        for name in metric_names:
            axes[2].plot([r["step"] for r in evaluation], [r[name] for r in evaluation], "o-", label=name)
        axes[2].set(title="validation metrics", xlabel="step")
        axes[2].legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    return str(path)


def plot_examples(rows: list, path, title: str = "") -> str:
    """A grid of images: one row per example, one column per entry of the row's dict (name → 2-D array or
    (C, H, W) image). Label maps (integer arrays) use a qualitative colour map. Writes a PNG; returns the path."""
    columns = list(rows[0])
    figure = Figure(figsize=(2.6 * len(columns), 2.6 * len(rows)))
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        for c, name in enumerate(columns):
            value = row[name]
            if value.ndim == 3:
                value = value[0] if value.shape[0] == 1 else value.transpose(1, 2, 0)
            integer = value.dtype.kind in "iub"
            axes[r, c].imshow(value, cmap="tab10" if integer else "gray", interpolation="nearest",
                              vmin=0 if integer else None, vmax=9 if integer else None)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(name)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return str(path)
