"""The compare view: configurations side by side, copying a layer setting (undoable)."""

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from quantviz.core.defaults import DEFAULT_WEIGHT
from quantviz.core.spec import QuantSpec
from quantviz.session import set_layer_spec

W4K = QuantSpec(bits=4, quantizer="kmeans", granularity="per_channel")


@pytest.fixture
def compare(window, qtbot):
    """Two configurations differing on fc1 (default W8, "w4k" with fc1 at W4 k-means per
    channel), the compare view open on both."""
    win = window
    s = win.session
    s.save_as("w4k")
    s.make_current("w4k")
    win.push_config(set_layer_spec(s.config, ["fc1"], "weight", W4K), "fc1: W4 kmeans")
    win.compareAction.trigger()
    cv = win.compareView
    assert win.compareDock.isVisible() and cv.isVisible()
    with qtbot.waitSignal(cv.histogramsUpdated, timeout=10_000):
        cv.set_compared(["default", "w4k"])
    with qtbot.waitSignal(cv.histogramsUpdated, timeout=10_000):
        cv.select_layer("fc1")
    return win, cv


def test_differing_cells_highlighted_and_sqnr_per_config(compare):
    _, cv = compare
    assert cv.objectName() == "compareView"
    assert cv.compared() == ["default", "w4k"]
    assert cv.diff_rows == {"fc1"}
    assert cv.cell_text("fc1", "w4k") == "W4 kmeans ch"
    assert cv.cell_text("fc1", "default") == "W8 sym ch"
    for name in ("default", "w4k"):
        hit = cv.cell_item("fc1", name)
        assert hit.font().bold()
        assert hit.background().style() != Qt.BrushStyle.NoBrush
        same = cv.cell_item("conv1", name)
        assert not same.font().bold()
        assert same.background().style() == Qt.BrushStyle.NoBrush
    sq_default = float(cv.cell_text("fc1", "default", "sqnr"))
    sq_w4k = float(cv.cell_text("fc1", "w4k", "sqnr"))
    assert sq_w4k < sq_default - 10
    assert float(cv.cell_text("conv1", "w4k", "sqnr")) == float(
        cv.cell_text("conv1", "default", "sqnr")
    )


def test_histograms_side_by_side_with_linked_axes(compare):
    _, cv = compare
    plots = cv.histogram_plots()
    assert len(plots) == 2
    vb0, vb1 = (p.getPlotItem().getViewBox() for p in plots)
    assert vb1.linkedView(vb1.XAxis) is vb0 and vb1.linkedView(vb1.YAxis) is vb0
    vb0.setXRange(-0.05, 0.05, padding=0)
    vb0.setYRange(0, 10, padding=0)
    (x0, x1), (y0, y1) = vb1.viewRange()
    assert (x0, x1) == pytest.approx((-0.05, 0.05), abs=1e-6)
    assert (y0, y1) == pytest.approx((0, 10), abs=1e-6)
    # each shows its own grid and SQNR / MSE in its legend
    texts = [p.sqnr_text() for p in cv.panels]
    assert all("SQNR" in t and "MSE" in t for t in texts)
    assert cv.panels[0].title() == "<b>default</b> · grid of row 0/64"
    assert cv.panels[1].title() == "<b>w4k</b> · grid of row 0/64"
    assert cv.panels[0].grid_text() == "W8 sym ch · 256 levels"
    assert cv.panels[1].grid_text() == "W4 kmeans ch · 16 levels"
    assert len(cv.panels[1].grid.xData) == 2 * 16


def test_bar_chart_one_series_per_config_and_tradeoff_marks(compare, qtbot):
    win, cv = compare
    assert set(cv.bar_items) == {"default", "w4k"}
    i = win.session.fqns.index("fc1")
    d, w = cv.bar_heights("default"), cv.bar_heights("w4k")
    assert len(d) == len(w) == len(win.session.fqns)
    assert w[i] < d[i] and w[0] == d[0]
    # a third configuration adds a third series; unticking it removes it again
    win.session.add_config("w2", set_layer_spec(win.session.config, ["conv1"], "weight", None))
    with qtbot.waitSignal(cv.updated):
        cv.set_compared(["default", "w4k", "w2"])
    assert len(cv.bar_items) == 3 and len(cv.histogram_plots()) == 3
    assert win.tradeoff.compared_names == ["default", "w4k", "w2"]
    item = cv.configList.item(win.session.config_names.index("w2"))
    item.setCheckState(Qt.CheckState.Unchecked)
    assert set(cv.bar_items) == {"default", "w4k"}
    assert win.tradeoff.compared_names == ["default", "w4k"]
    # the palette switch re-colours the compare plots too
    from quantviz.gui.plot_style import DARK

    win.set_dark(True)
    assert cv.errorPlot.backgroundBrush().color().name() == DARK.background
    assert all(p.backgroundBrush().color().name() == DARK.background for p in cv.histogram_plots())
    assert len(cv.histogram_plots()) == 2
    win.set_dark(False)
    win.compareDock.close()
    assert win.tradeoff.compared_names == []


def test_metrics_not_evaluated_then_evaluate_button(compare, qtbot):
    win, cv = compare
    t = cv.metricsTable
    assert t.rowCount() == 2
    assert [t.item(r, 1).text() for r in range(2)] == ["not evaluated"] * 2
    assert all("×" in t.item(r, 4).text() for r in range(2))  # size known without evaluating
    assert set(cv.evaluate_buttons) == {"default", "w4k"}
    win.session.make_current("w4k")
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(cv.evaluate_buttons["default"], Qt.MouseButton.LeftButton)
    assert win.session.current_name == "w4k"  # evaluating another one does not switch
    qtbot.waitUntil(lambda: "accuracy" in t.item(0, 1).text())
    assert t.item(1, 1).text() == "not evaluated"
    assert "BOPs" in t.item(0, 5).text()
    assert set(cv.evaluate_buttons) == {"w4k"}
    # an up-to-date row: upright, no stale tooltip
    assert not t.item(0, 1).font().italic() and t.item(0, 1).toolTip() == ""
    assert t.item(1, 1).font().italic()  # not evaluated: stale too
    qtbot.waitUntil(lambda: win.tradeoff.compared_count() == 1)
    # editing an evaluated configuration marks its numbers as stale
    win.session.replace_config(
        "default", set_layer_spec(win.session.configs["default"], ["fc2"], "weight", None)
    )
    qtbot.waitUntil(lambda: "edited since" in t.item(0, 1).text())
    assert set(cv.evaluate_buttons) == {"default", "w4k"}
    # the stale row is marked visibly: every cell italic, a tooltip saying why
    for col in range(6):
        assert t.item(0, col).font().italic()
        assert "Stale: default was edited since" in t.item(0, col).toolTip()
    assert t.item(0, 1).text().endswith("(stale: edited since)")
    assert cv.evaluate_buttons["default"].text() == "Re-evaluate"
    assert cv.evaluate_buttons["w4k"].text() == "Evaluate"
    assert "No evaluation of w4k" in t.item(1, 1).toolTip()
    # "Evaluate the missing ones" queues both behind each other
    qtbot.mouseClick(cv.evaluateMissingButton, Qt.MouseButton.LeftButton)
    assert win.jobRunner.running and win.jobs.queue == ["w4k"]
    qtbot.waitUntil(lambda: not cv.evaluate_buttons, timeout=120_000)
    assert win.session.current_name == "w4k"
    assert {e.name for e in win.session.results} == {"default", "w4k"}
    qtbot.waitUntil(lambda: win.tradeoff.compared_count() == 2)


def test_copy_layer_setting_then_undo(compare, qtbot):
    win, cv = compare
    s = win.session
    texts = [text for text, *_ in cv.copy_actions("fc1")]
    assert texts == ["Copy fc1 from default to w4k", "Copy fc1 from w4k to default"]
    menu = cv.build_copy_menu("fc1")
    assert [a.text() for a in menu.actions()] == texts
    assert cv.copy_actions("conv1") == []
    cv.sourceCombo.setCurrentText("w4k")
    cv.targetCombo.setCurrentText("default")
    assert cv.copyButton.text() == "Copy fc1"
    assert cv.copyButton.toolTip().startswith("Copy fc1 from w4k to default")
    assert cv.copyButton.isEnabled()
    with qtbot.waitSignal(cv.updated):
        qtbot.mouseClick(cv.copyButton, Qt.MouseButton.LeftButton)
    assert s.configs["default"].resolve("fc1").weight == W4K
    assert s.current_name == "w4k"
    assert cv.diff_rows == set()
    assert cv.cell_text("fc1", "default") == "W4 kmeans ch"
    assert not cv.copyButton.isEnabled()  # nothing left to copy
    assert win.undoStack.undoText() == "copy fc1 from w4k to default"
    with qtbot.waitSignal(cv.updated):
        win.undoAction.trigger()
    assert s.configs["default"].resolve("fc1").weight == DEFAULT_WEIGHT
    assert cv.diff_rows == {"fc1"}
    # the context menu's action does the same; the main views follow the current config
    s.select(["fc1"])
    assert win.histogram.level_count() == 16
    with qtbot.waitSignal(cv.updated):
        menu = cv.build_copy_menu("fc1")
        menu.actions()[0].trigger()  # from default to w4k
    assert s.configs["w4k"].resolve("fc1").weight == DEFAULT_WEIGHT
    assert s.config.resolve("fc1").weight == DEFAULT_WEIGHT  # w4k is current
    assert win.histogram.level_count() == 256


def test_the_tables_and_bars_show_the_qt_free_model(compare):
    from quantviz.app.compare import compare_state

    _, cv = compare
    st = compare_state(cv.controller, cv.compared())
    assert cv.state == st
    for r in st.layers:
        for name, scheme, sq in zip(st.names, r.schemes, r.sqnr_texts, strict=True):
            assert cv.cell_text(r.fqn, name) == scheme
            assert cv.cell_text(r.fqn, name, "sqnr") == sq
    t = cv.metricsTable
    for row, m in enumerate(st.metrics):
        assert [t.item(row, c).text() for c in range(6)] == list(m.texts())
    for name in st.names:
        assert cv.bar_heights(name) == pytest.approx(list(st.bars.heights[name]))


def test_evaluate_button_is_a_compact_button_in_its_own_column(compare, qtbot):
    """The per-row Evaluate / Re-evaluate button stretched over the metrics table's whole
    remaining width (the last column stretched): it is now a normal button, its column
    sized to it."""
    from test_small_screen_and_panels import SMALL, _small

    win, cv = compare
    _small(qtbot, win)
    t = cv.metricsTable
    # one configuration evaluated, the other not: one button left, in w4k's row
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(cv.evaluate_buttons["default"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: set(cv.evaluate_buttons) == {"w4k"})
    qtbot.waitUntil(lambda: cv.evaluate_buttons["w4k"].isVisible())
    b = cv.evaluate_buttons["w4k"]
    assert b.text() == "Evaluate"
    vw = t.viewport().width()
    assert vw > 500, (vw, SMALL)  # a table wide enough for the stretch to show
    hint = b.sizeHint().width()
    assert abs(b.width() - hint) <= 8, (b.width(), hint)
    assert b.width() < vw / 4, (b.width(), vw)
    # the button's column is sized to it, not to the table's remaining width
    col = t.columnCount() - 1
    assert t.columnWidth(col) <= hint + 24, (t.columnWidth(col), hint)
    # it sits in w4k's row, wholly inside its cell, and a click asks to evaluate w4k
    cell = t.visualRect(t.model().index(1, col))
    top_left = b.mapTo(t.viewport(), b.rect().topLeft())
    assert cell.contains(top_left) and cell.contains(top_left + b.rect().bottomRight())
    with qtbot.waitSignal(cv.evaluateRequested) as blocker:
        qtbot.mouseClick(b, Qt.MouseButton.LeftButton)
    assert blocker.args == ["w4k"]
    qtbot.waitUntil(lambda: not win.jobRunner.running, timeout=60_000)
