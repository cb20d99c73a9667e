"""The budget slider as a user drives it: compute costs, drag, keys, release -> a new point."""

from __future__ import annotations

import itertools

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QStyle, QStyleOptionSlider

from quantviz.gui.layer_table import C_W


def _shown(win):
    m = win.table.model
    return {m.fqn(r): m.data(m.index(r, C_W)) for r in range(m.rowCount())}


def _brute_force(table, budget_bytes):
    """The least total cost within the budget, over every combination of the candidates."""
    bound = budget_bytes - table.fixed_bytes
    best = None
    per = [table.layer_candidates(f) for f in table.fqns]
    for combo in itertools.product(*per):
        if sum(c.bytes for c in combo) <= bound:
            cost = sum(table.cost(c) for c in combo)
            if best is None or cost < best[0]:
                best = (cost, combo)
    return best


def _handle_centre(slider):
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    r = slider.style().subControlRect(
        QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, slider
    )
    return r.center()


def _open_and_compute(win, qtbot, choices):
    win.budgetAction.trigger()
    assert win.budgetDock.isVisible()
    panel = win.budgetPanel
    assert not panel.slider.isEnabled()
    panel.choicesEdit.setText(choices)
    with qtbot.waitSignal(
        win.jobDone, timeout=60_000, check_params_cb=lambda k: k.startswith("mixed cost")
    ):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)
    assert panel.slider.isEnabled() and panel.table is not None
    return panel


def test_drag_and_keys_change_the_assignment_and_release_adds_a_point(window, qtbot):
    win = window
    panel = _open_and_compute(win, qtbot, "int2:pc,int4:g32,int8:pc,nf4,mxfp4,nvfp4,float")
    table = panel.table
    # at the largest budget every layer keeps its least-cost scheme: float (cost 0)
    assert set(_shown(win).values()) == {"→ float"}
    tp = win.tradeoff
    before = tp.point_count()

    # drag the handle towards the left; the table follows during the drag
    slider = panel.slider
    start = _handle_centre(slider)
    seen = []
    panel.assignmentChanged.connect(lambda a: seen.append(a))
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=start)
    for x in range(start.x(), int(slider.width() * 0.3), -10):
        qtbot.mouseMove(slider, QPoint(x, start.y()))
    assert slider.isSliderDown()
    assert slider.value() < 400
    assert len(seen) > 2  # re-solved while dragging
    shown = _shown(win)
    assert set(shown.values()) != {"→ float"}
    # what the table shows is the optimum at that budget, checked by brute force
    b = panel.budget_bytes()
    cost, _ = _brute_force(table, b)
    assert abs(panel.solution.objective - cost) < 1e-9
    assert panel.solution.model_bytes <= b
    assert shown == {f: f"→ {lab}" for f, lab in panel.solution.assignment.items()}
    with qtbot.waitSignal(tp.pointsChanged, timeout=60_000, check_params_cb=lambda n: n > before):
        qtbot.mouseRelease(
            slider, Qt.MouseButton.LeftButton, pos=QPoint(int(slider.width() * 0.3), start.y())
        )
    e = tp.entries[-1]
    assert e.series == "exact mixed" and e.name.startswith("mixed mse")
    assert e.result.model_bytes <= b + 1e-6
    schemes = {lay["fqn"]: lay["scheme"] for lay in e.result.layers}
    for f, lab in panel.solution.assignment.items():
        assert (schemes[f] == "W float / A float") == (lab == "float")

    # keys: Home goes to the smallest model; the assignment changes at once
    slider.setFocus()
    n = tp.point_count()
    with qtbot.waitSignal(tp.pointsChanged, timeout=60_000, check_params_cb=lambda k: k > n):
        qtbot.keyClick(slider, Qt.Key.Key_Home)
        assert slider.value() == 0
        smallest = _shown(win)
        assert smallest != shown
        assert panel.solution.model_bytes <= panel.budget_bytes()
    # Apply makes it the current configuration (undoable)
    qtbot.mouseClick(panel.applyButton, Qt.MouseButton.LeftButton)
    cfg = win.session.config
    for f, lab in panel.solution.assignment.items():
        assert (cfg.resolve(f).weight is None) == (lab == "float")
    win.undoAction.trigger()
    assert win.session.config != cfg


def test_unavailable_proxy_is_reported_not_fatal(window, qtbot, monkeypatch):
    from quantviz.eval import mixed_exact

    monkeypatch.setitem(mixed_exact.PROXIES, "hessian", None)
    win = window
    win.budgetAction.trigger()
    panel = win.budgetPanel
    panel.proxyCombo.setCurrentText("hessian")
    with qtbot.waitSignal(win.errors.errorShown, timeout=10_000):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)
    assert not panel.slider.isEnabled()
    panel.proxyCombo.setCurrentText("mse")
    panel.choicesEdit.setText("int4:g7")
    with qtbot.waitSignal(win.errors.errorShown, timeout=10_000):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)


def test_without_a_traced_front_the_ilp_solves_in_the_background(window, qtbot):
    """A front too large to trace: each budget goes to the background ILP, newest first;
    the table shows its optimum when it arrives."""
    win = window
    panel = _open_and_compute(win, qtbot, "int2:pc,int4:pc,int8:pc,float")
    panel.set_table(panel.table, None)  # as when the front exceeds MIXED_FRONT_POINTS
    slider = panel.slider
    slider.setFocus()
    with qtbot.waitSignal(panel.assignmentChanged, timeout=10_000):
        for _ in range(8):
            qtbot.keyClick(slider, Qt.Key.Key_PageDown)
    b = panel.budget_bytes()
    qtbot.waitUntil(lambda: panel.solution is not None and panel.solution.budget.value == b)
    cost, _ = _brute_force(panel.table, b)
    assert abs(panel.solution.objective - cost) < 1e-9
    assert _shown(win) == {f: f"→ {lab}" for f, lab in panel.solution.assignment.items()}
