"""Figures: training curves (more plots for the notebooks join here). Uses matplotlib's Agg backend,
so it works on machines without a display."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: dict, path) -> str:
    """Plot training loss, validation loss/metrics and the learning rate from a ``Trainer`` history.

    ``history`` holds ``"train"`` and ``"eval"`` lists of per-step records (dicts with ``"step"``).
    Writes a PNG at ``path`` and returns the path.
    """
    train, evaluation = history.get("train", []), history.get("eval", [])
    metric_names = sorted({k for record in evaluation for k in record if k not in ("step", "loss")})
    panels = 2 + bool(metric_names)
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6))
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
    plt.close(figure)
    return str(path)
