"""``minseg.app.viz.interactive``: the static fallback and the slider wiring (with a fake ipywidgets)."""

import sys
import types

import pytest

from minseg.app import viz


class _Control:
    """A stand-in for an ipywidgets value widget: keeps its keyword arguments, notifies observers."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self._value = kwargs["value"]
        self._observers = []

    def observe(self, handler, names):
        assert names == "value"
        self._observers.append(handler)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new):
        self._value = new
        for handler in self._observers:
            handler({"new": new})


def _fake_ipywidgets():
    module = types.ModuleType("ipywidgets")
    module.IntSlider = type("IntSlider", (_Control,), {})
    module.FloatSlider = type("FloatSlider", (_Control,), {})
    module.Dropdown = type("Dropdown", (_Control,), {})
    module.HBox = module.VBox = lambda children: types.SimpleNamespace(children=children)

    def interactive_output(function, controls):
        # as ipywidgets does: call once now, and again whenever a control's value changes
        def update(_change=None):
            function(**{name: control.value for name, control in controls.items()})

        for control in controls.values():
            control.observe(update, names="value")
        update()
        return types.SimpleNamespace(kind="output")

    module.interactive_output = interactive_output
    return module


CONTROLS = {"kernel": (1, 7, 2, 3), "sigma": (0.5, 2.0, 0.25, 1.0), "mode": ["nearest", "bilinear"]}


def test_static_path_calls_draw_once_with_the_defaults(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "batch run")  # as under nbmake
    calls = []
    result = viz.interactive(lambda **values: calls.append(values) or "figure", **CONTROLS)
    assert calls == [{"kernel": 3, "sigma": 1.0, "mode": "nearest"}]
    assert result == "figure"
    assert not viz.widgets_enabled()


def test_static_path_without_ipywidgets(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MINSEG_WIDGETS", raising=False)
    monkeypatch.setattr(viz, "_notebook_front_end", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    assert not viz.widgets_enabled()
    assert viz.interactive(lambda stride: stride * 10, stride=(1, 4, 1, 2)) == 20


def test_sliders_are_wired_to_draw(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MINSEG_WIDGETS", raising=False)
    monkeypatch.setattr(viz, "_notebook_front_end", lambda: True)
    fake = _fake_ipywidgets()
    monkeypatch.setitem(sys.modules, "ipywidgets", fake)
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    calls = []

    def draw(kernel, sigma, mode):
        calls.append((kernel, sigma, mode))
        return f"figure k={kernel} σ={sigma} {mode}"

    assert viz.widgets_enabled()
    box = viz.interactive(draw, **CONTROLS)
    sliders, output = box.children
    kernel, sigma, mode = sliders.children
    assert type(kernel).__name__ == "IntSlider" and kernel.kwargs["min"] == 1 and kernel.kwargs["max"] == 7
    assert kernel.kwargs["step"] == 2 and kernel.value == 3
    assert type(sigma).__name__ == "FloatSlider" and sigma.value == 1.0 and sigma.kwargs["step"] == 0.25
    assert type(mode).__name__ == "Dropdown" and mode.kwargs["options"] == ["nearest", "bilinear"]
    assert output.kind == "output"
    assert calls == [(3, 1.0, "nearest")]          # the first drawing uses the defaults

    kernel.value = 5                                 # the user moves a slider
    mode.value = "bilinear"
    assert calls[-2:] == [(5, 1.0, "nearest"), (5, 1.0, "bilinear")]
    assert shown == ["figure k=3 σ=1.0 nearest", box,  # the default figure, then the controls,
                     "figure k=5 σ=1.0 nearest", "figure k=5 σ=1.0 bilinear"]  # then one figure a change


def test_minseg_widgets_0_forces_the_static_figure(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("MINSEG_WIDGETS", "0")
    monkeypatch.setattr(viz, "_notebook_front_end", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", _fake_ipywidgets())
    assert not viz.widgets_enabled()
    assert viz.interactive(lambda rate: rate + 1, rate=(1, 18, 1, 6)) == 7


@pytest.mark.parametrize("spec", [(1, 5, 1), (0, 1, 0.1, 2.0), [], "3"])
def test_malformed_controls_are_refused(spec):
    with pytest.raises((TypeError, ValueError)):
        viz.interactive(lambda value: value, value=spec)


def test_real_ipywidgets_redraw_on_change(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MINSEG_WIDGETS", raising=False)
    monkeypatch.setattr(viz, "_notebook_front_end", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *objects: None)
    calls = []
    box = viz.interactive(lambda stride, mode: calls.append((stride, mode)), stride=(1, 4, 1, 2), mode=["a", "b"])
    stride, mode = box.children[0].children
    stride.value = 4
    mode.value = "b"
    assert calls == [(2, "a"), (4, "a"), (4, "b")]
