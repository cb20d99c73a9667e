"""As a user: the activation panel of a fine-tuned configuration shows the statistics of its
own weights, and clicking an old result of a fine-tuned configuration whose scheme was
edited keeps its weights and says so (issue 13 follow-ups)."""

from __future__ import annotations

import copy

import torch
from PySide6.QtCore import Qt
from test_main_window import click_row, type_bits

from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec


def _tuned(module) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        k: p.detach() * 1.5 + 0.3 * p.detach().abs().mean() * torch.randn(p.shape, generator=g)
        for k, p in module.named_parameters()
    }


def _input_range(module, weights, x, fqn) -> tuple[float, float, int]:
    """Plain torch: a copy of the model with ``weights``; ``fqn``'s input min/max/count."""
    m = copy.deepcopy(module).eval()
    m.load_state_dict(weights, strict=False)
    seen = []
    h = m.get_submodule(fqn).register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        m(x)
    h.remove()
    v = torch.cat([t.flatten() for t in seen])
    return float(v.min()), float(v.max()), int(v.numel())


def _make_current(qtbot, win, name: str) -> None:
    lst = win.configs.list
    row = win.configs.names().index(name)
    rect = lst.visualItemRect(lst.item(row))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseClick(win.configs.buttons["makeCurrent"], Qt.MouseButton.LeftButton)
    assert win.session.current_name == name


def test_activation_panel_of_a_fine_tuned_configuration(window, qtbot):
    win = window
    s = win.session
    fqn = s.fqns[-1]
    x = s.data.calib_x
    weights = _tuned(s.handle.module)
    loaded = _input_range(s.handle.module, dict(s.handle.module.named_parameters()), x, fqn)
    want = _input_range(s.handle.module, weights, x, fqn)
    s.add_config("qat", s.config)
    s.set_tuned("qat", weights)
    click_row(qtbot, win, fqn)
    info = win.activations.info
    assert f"range [{loaded[0]:.3g}, {loaded[1]:.3g}]" in info.text()
    _make_current(qtbot, win, "qat")
    qtbot.waitUntil(lambda: f"range [{want[0]:.3g}, {want[1]:.3g}]" in info.text(), timeout=30_000)
    title = win.activations.plot.getPlotItem().titleLabel.text
    assert f"{want[2]:,} values" in title
    _make_current(qtbot, win, "default")  # back: the loaded weights' statistics
    assert f"range [{loaded[0]:.3g}, {loaded[1]:.3g}]" in info.text()


def test_clicking_an_old_result_of_a_fine_tuned_configuration(window, qtbot):
    win = window
    s = win.session
    w4 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel")))
    s.add_config("w4 qat", w4)
    tw = s.set_tuned("w4 qat", _tuned(s.handle.module))
    _make_current(qtbot, win, "w4 qat")
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()
    entry = s.results[-1]
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate_named("default")  # a second point: the plot spans both
    # the user edits the fine-tuned configuration's scheme, then clicks the old point
    click_row(qtbot, win, "fc1")
    type_bits(qtbot, win, 2)
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 2)
    with qtbot.waitSignal(tp.entryClicked, timeout=5_000):
        tp.click_entry(tp.entries.index(entry))  # the point's keyboard / click path
    assert s.current_name == "w4 qat (2)" and "w4 qat (2)" in win.configs.names()
    assert s.config == entry.config and s.tuned["w4 qat (2)"] is tw
    msg = win.statusBar().currentMessage()
    assert msg == (
        "w4 qat (2) is now the current configuration, with the fine-tuned weights of w4 qat"
    )
    # evaluated again: the number of the point clicked
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.evaluate()
    assert s.results[-1].name == "w4 qat (2)"
    assert s.results[-1].value == entry.value


def test_a_failed_capture_is_said_once(window, qtbot):
    win = window
    s = win.session
    weights = {k: p.detach() * 1.5 for k, p in s.handle.module.named_parameters()}
    weights["gone.weight"] = torch.ones(3)  # not in this model: the swap refuses
    s.add_config("qat", s.config)
    s.set_tuned("qat", weights)
    click_row(qtbot, win, s.fqns[-1])
    shown = []
    win.errors.errorShown.connect(lambda t, m: shown.append((t, m)))
    _make_current(qtbot, win, "qat")
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=30_000)
    qtbot.wait(300)
    assert len(shown) == 1 and shown[0][0] == "Activation statistics"
    assert "gone.weight" in shown[0][1]
    text = win.activations.info.text()
    assert text.startswith("No statistics of the fine-tuned weights") and "gone.weight" in text
