"""Figures: training curves, example grids and the notebooks' sliders (``interactive``). Figures are drawn
on a bare ``matplotlib.figure.Figure`` (no pyplot), so they work on machines without a display and importing
this module never changes the caller's backend (a notebook's ``%matplotlib inline`` keeps working)."""

from __future__ import annotations

import numbers
import os
import sys

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


def _default(spec):
    """The starting value of one control: the 4th entry of ``(min, max, step, default)``, a list's first entry."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError("a list of choices needs at least one entry")
        return spec[0]
    if isinstance(spec, tuple) and len(spec) == 4 and all(isinstance(v, numbers.Real) for v in spec):
        low, high, _, value = spec
        if not low <= value <= high:
            raise ValueError(f"default {value} is outside [{low}, {high}]")
        return value
    raise TypeError(f"a control is (min, max, step, default) or a list of choices, not {spec!r}")


def _widget(ipywidgets, name, spec):
    """An ipywidgets control for one spec: IntSlider when all four numbers are ints, else FloatSlider; a
    list becomes a Dropdown."""
    value = _default(spec)
    if isinstance(spec, list):
        return ipywidgets.Dropdown(options=spec, value=value, description=name)
    low, high, step, _ = spec
    integer = all(isinstance(v, numbers.Integral) for v in spec)
    slider = ipywidgets.IntSlider if integer else ipywidgets.FloatSlider
    return slider(min=low, max=high, step=step, value=value, description=name, continuous_update=False)


def _notebook_front_end() -> bool:
    """True inside a Jupyter kernel (an IPython shell started by IPKernelApp), where widgets can render."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def widgets_enabled() -> bool:
    """Whether ``interactive`` will show sliders: ``ipywidgets`` imports, a notebook front end is present,
    and the run is not a batch one (pytest/nbmake set ``PYTEST_CURRENT_TEST``, CI sets ``CI``;
    ``MINSEG_WIDGETS=0`` forces the static figure, e.g. for a full ``nbconvert --execute`` whose outputs
    are committed)."""
    if os.environ.get("MINSEG_WIDGETS") == "0" or os.environ.get("PYTEST_CURRENT_TEST") or os.environ.get("CI"):
        return False
    if not _notebook_front_end():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def interactive(draw, **controls):
    """Sliders for the parameter a figure is about, or one static figure where sliders cannot run.

    ``draw(**values)`` draws the figure for one set of values (and may return it: a returned object is
    displayed). Each keyword is one control:

    * ``(min, max, step, default)`` — a slider (integer if all four are ints, else float);
    * ``[choice, ...]`` — a drop-down whose default is the first choice.

    With widgets (see ``widgets_enabled``) the sliders are displayed and every change calls ``draw`` again;
    returns the ``ipywidgets`` box. Otherwise (no ipywidgets, no front end, CI, nbmake) ``draw`` is called
    once with the defaults and its result is returned, so the notebook still shows the default figure.
    """
    defaults = {name: _default(spec) for name, spec in controls.items()}
    if not widgets_enabled():
        return draw(**defaults)
    import ipywidgets
    from IPython.display import display

    def redraw(**values):
        result = draw(**values)
        if result is not None:
            display(result)

    widgets = {name: _widget(ipywidgets, name, spec) for name, spec in controls.items()}
    output = ipywidgets.interactive_output(redraw, widgets)
    box = ipywidgets.VBox([ipywidgets.HBox(list(widgets.values())), output])
    display(box)
    return box
