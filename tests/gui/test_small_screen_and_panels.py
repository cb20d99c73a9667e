"""What a user meets on a 1366 x 768 screen: the debug dock fits and is readable, every dock
can be reopened from View > Panels, File > Open data takes a typed source, and the proxies
table names schemes like the rest of the app."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication, QDockWidget

# 95% of a 1366 x 768 screen's free area, as the window opens there (main_window._initial_size)
SMALL = (1297, 729)


def _small(qtbot, win) -> None:
    win.resize(*SMALL)
    qtbot.waitUntil(lambda: win.size().toTuple() == SMALL)


def _run_debug(qtbot, win) -> None:
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as blocker:
        win.debugAction.trigger()
    assert blocker.args == ["debug"]
    QApplication.processEvents()


def test_debug_dock_fits_a_1366x768_screen_with_a_readable_plot(qtbot, window):
    win = window
    _small(qtbot, win)
    _run_debug(qtbot, win)
    dock, view = win.debugDock, win.debugView
    qtbot.waitExposed(view.plot)
    # the window did not grow past the screen's bottom edge (it grew to 918 px before)
    assert win.height() <= 768 and win.minimumSizeHint().height() <= 729
    # the dock opens with room (not its minimum height, nor most of the window) and the
    # strip plot is tall enough
    assert 0.3 * win.height() <= dock.height() <= 0.45 * win.height()
    assert view.plot.height() >= 180
    # the central views keep their place above the dock, the layer controls scroll
    assert win.centralWidget().height() >= 250
    assert win.findChild(object, "controlsScroll").widget() is win.controls
    # every layer named under its bars, and the names do not overlap
    labels = view.axis.visible_labels()
    assert labels == ["conv1", "conv2", "fc1", "fc2"]
    # the legend is one row above the bars, not a box over them
    assert view.legend.columnCount == 3
    # no empty hover box drawn over the first bar until the pointer is on a bar
    assert not view.hoverLabel.isVisible()


def test_strip_axis_thins_long_layer_names_so_they_do_not_overlap(qtbot):
    """30 Llama-like layer names under a 1280-px plot: short, non-overlapping names."""
    from quantviz.gui.debug_view import DebugView, short_names

    fqns = ["model.embed_tokens"]
    for i in range(4):
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            fqns.append(f"model.layers.{i}.self_attn.{p}")
        for p in ("gate_proj", "up_proj", "down_proj"):
            fqns.append(f"model.layers.{i}.mlp.{p}")
    fqns.append("lm_head")
    assert len(fqns) == 30
    assert short_names(fqns)[:2] == ["embed_tokens", "0.self_attn.q_proj"]
    assert short_names(["conv1", "fc1"]) == ["conv1", "fc1"]
    view = DebugView()
    qtbot.addWidget(view)
    view.resize(1280, 300)
    view.show()
    qtbot.waitExposed(view)
    view.axis.set_names(fqns)
    view.plot.getPlotItem().setRange(xRange=(-0.8, 29.8), padding=0)
    QApplication.processEvents()
    labels = view.axis.visible_labels()
    assert 3 <= len(labels) < 30
    fm = QFontMetrics(view.axis.font())
    widest = max(fm.horizontalAdvance(t) for t in labels)
    assert widest <= view.axis.max_px + 2
    assert len(labels) * widest < view.axis.width()  # side by side they fit: no overlap
    # every name can still be found: the first tick is the first layer
    assert labels[0] == "embed_tokens"


def test_view_panels_reopen_every_dock(qtbot, window):
    win = window
    _small(qtbot, win)
    view_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&View")
    assert win.panelsMenu.menuAction() in view_menu.actions()
    toggles = {a.text(): a for a in win.panelsMenu.actions()}
    docks = win.findChildren(QDockWidget)
    assert {d.objectName() for d in docks} >= {"debugDock", "compareDock", "budgetDock"}
    for d in docks:  # each dock has its own show/hide toggle
        assert d.toggleViewAction() in win.panelsMenu.actions()
    assert win.toolBar.toggleViewAction() in win.panelsMenu.actions()
    _run_debug(qtbot, win)
    dock = win.debugDock
    toggle = dock.toggleViewAction()
    assert toggle.isChecked() and toggles[dock.windowTitle()] is toggle
    # the user closes the dock with its title-bar button ...
    dock.findChild(object, "qt_dockwidget_closebutton").click()
    qtbot.waitUntil(lambda: not dock.isVisible())
    assert not toggle.isChecked()
    # ... and reopens it from View > Panels: the result is still there, with room
    toggle.trigger()
    qtbot.waitUntil(dock.isVisible)
    QApplication.processEvents()
    assert win.debugView.fqns == ["conv1", "conv2", "fc1", "fc2"]
    assert dock.height() >= 0.35 * win.height()
    # the budget slider and the compare view too
    for d in (win.budgetDock, win.compareDock):
        d.toggleViewAction().trigger()
        qtbot.waitUntil(d.isVisible)
        d.toggleViewAction().trigger()
        qtbot.waitUntil(lambda d=d: not d.isVisible())


def _type_source(qtbot, dlg, text: str) -> None:
    edit = dlg.sourceBox.lineEdit()
    edit.selectAll()
    qtbot.keyClick(edit, Qt.Key.Key_Delete)
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_open_data_dialog_takes_a_typed_sample_name_or_path(qtbot, window, tmp_path):
    win = window
    win.openDataAction.trigger()
    dlg = win.dataDialog
    qtbot.waitExposed(dlg)
    # pre-filled with the data source in use; the bundled source that fits is listed
    assert dlg.sourceBox.currentText() == "sample:digits"
    assert [dlg.sourceBox.itemText(i) for i in range(dlg.sourceBox.count())] == ["sample:digits"]
    # a bundled name that does not fit: the error names it, the data stays
    with qtbot.waitSignal(win.errors.errorShown, timeout=60_000) as err:
        _type_source(qtbot, dlg, "sample:tiny_lm")
    assert not dlg.isVisible()
    assert "sample:tiny_lm" in err.args[1]
    assert win.session.data_source == "sample:digits"
    # a typed path
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((30, 1, 8, 8)).astype("f4"), y=np.arange(30) % 10)
    win.openDataAction.trigger()
    dlg = win.dataDialog
    qtbot.waitExposed(dlg)
    with qtbot.waitSignals([win.dataLoaded, win.statsReady], timeout=60_000):
        _type_source(qtbot, dlg, str(path))
    assert win.session.data_source == str(path) and len(win.session.data) == 30
    # reopened: pre-filled with that file; typing the bundled name goes back to it
    win.openDataAction.trigger()
    dlg = win.dataDialog
    qtbot.waitExposed(dlg)
    assert dlg.sourceBox.currentText() == str(path)
    with qtbot.waitSignals([win.dataLoaded, win.statsReady], timeout=60_000):
        _type_source(qtbot, dlg, "sample:digits")
    assert win.session.data_source == "sample:digits" and len(win.session.data) > 30
    # an empty source cannot be opened
    win.openDataAction.trigger()
    dlg = win.dataDialog
    dlg.sourceBox.setEditText("  ")
    assert not dlg.openButton.isEnabled()
    qtbot.keyClick(dlg.sourceBox.lineEdit(), Qt.Key.Key_Return)
    assert dlg.isVisible()
    dlg.reject()


def test_open_data_dialog_for_a_language_model_lists_token_data():
    from quantviz.gui.data_dialog import bundled_sources, data_file_filter

    class LM:
        is_causal_lm = True

    assert bundled_sources(LM()) == ["sample:tiny_lm"]
    assert "*.txt" in data_file_filter(LM()) and "*.txt" not in data_file_filter(None)
    assert bundled_sources(None) == ["sample:digits"]


def test_proxies_table_scheme_reads_like_the_layer_table(qtbot, window):
    """The scheme column says ``W3 sym ch`` as the layer table's Weight column does (it
    said ``3 sym ch``)."""
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec
    from quantviz.eval.proxies import rank_proxies
    from quantviz.gui.layer_table import C_W

    win = window
    spec = QuantSpec(bits=3, granularity="per_channel")
    s = win.session
    gen = rank_proxies(s.handle, s.data, [(f, spec) for f in s.fqns], ("mse", "kl"))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            report = stop.value
            break
    win.debugView.show_proxies(report)
    t = win.debugView.proxyTable
    assert t.horizontalHeaderItem(1).text() == "scheme"
    schemes = {t.item(r, 1).text() for r in range(t.rowCount())}
    assert schemes == {"W3 sym ch"}
    # the layer table shows the same words for a layer at that scheme
    win.push_config(ModelConfig(default=LayerConfig(weight=spec)), "W3")
    m = win.table.model
    assert m.data(m.index_of("conv1", C_W), Qt.ItemDataRole.DisplayRole) == "W3 sym ch"


@pytest.mark.parametrize("fraction", [0.42])
def test_give_room_sizes_a_cramped_bottom_dock(qtbot, fraction):
    from PySide6.QtWidgets import QLabel, QMainWindow

    from quantviz.gui.layout import give_room

    win = QMainWindow()
    qtbot.addWidget(win)
    win.setCentralWidget(QLabel("centre"))
    dock = QDockWidget("d", win)
    dock.setWidget(QLabel("dock"))
    win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    win.resize(*SMALL)
    win.show()
    qtbot.waitExposed(win)
    give_room(win, dock, fraction)
    QApplication.processEvents()
    assert abs(dock.height() - fraction * win.height()) < 0.06 * win.height()


def test_progress_text_stays_on_one_line_of_the_bar(qtbot, window):
    """A long stage text wrapped to two clipped lines in the 340-px bar; now its start is
    elided, the counts and the percentage stay, the full text is the tooltip."""
    win = window
    bar = win.progressBar
    win.status.job_started("Sensitivity proxies at W4 sym ch")
    win.status.job_progress(0.25, "point 1/6 · measure 600/1000")
    text = bar.text()
    assert text.startswith("…") and text.endswith("measure 600/1000 25%")
    assert QFontMetrics(bar.font()).horizontalAdvance(text) <= bar.width() - 8
    assert bar.toolTip().startswith("Sensitivity proxies at W4 sym ch: point 1/6")
    win.status.job_idle()
    assert bar.text() == "idle"


def test_toolbar_fits_1366_px_with_readable_bit_widths(qtbot, window):
    win = window
    _small(qtbot, win)
    QApplication.processEvents()
    tb = win.toolBar
    for edit, text in ((win.sweepBitsEdit, "2,3,4,5,6,8"), (win.sensitivityBitsEdit, "2,4,8")):
        edit.setText(text)
        assert edit.width() >= edit.fontMetrics().horizontalAdvance(text) + 8
    # nothing pushed into the toolbar's overflow menu: Compare and Export still show
    for a in (win.compareAction, win.exportAction):
        w = tb.widgetForAction(a)
        assert w is not None and w.isVisible()
        assert w.geometry().right() <= tb.width()


def test_config_list_marks_a_result_of_an_earlier_version(qtbot, window):
    """After F5 and then an edit, the list said ``default — accuracy 0.98`` as if it were
    the edited configuration's; now it says the result predates the edits."""
    win = window
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    lst = win.configs.list
    assert "accuracy" in lst.item(0).text() and "before the last edits" not in lst.item(0).text()
    spin = win.controls.bitsSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "4")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "before the last edits" in lst.item(0).text())
    assert "F5" in lst.item(0).toolTip()
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: as measured
    qtbot.waitUntil(lambda: "before the last edits" not in lst.item(0).text())


def test_float_baseline_label_follows_new_data(qtbot, window, tmp_path):
    """The dashed float line kept the text of the first data's baseline once it had been
    hidden (new data or model clear the results): "float model 0.9806" on tiny_lm's
    perplexity plot."""
    import torch

    win = window
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    line = win.tradeoff.baseline
    first = win.session.baseline
    qtbot.waitUntil(lambda: line.label.toPlainText() == f"float model {first:.4f}")
    path = tmp_path / "d.npz"
    x = np.random.default_rng(1).standard_normal((40, 1, 8, 8)).astype("f4")
    y = np.arange(40) % 10
    np.savez(path, x=x, y=y)
    with qtbot.waitSignals([win.dataLoaded, win.statsReady], timeout=60_000):
        win.open_data(str(path))
    qtbot.waitUntil(lambda: not line.isVisible())  # no results for the new data yet
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    # independent: the float model's accuracy on these 40 samples, in plain torch
    with torch.no_grad():
        pred = win.session.handle.module(torch.from_numpy(x)).argmax(-1).numpy()
    acc = float((pred == y).mean())
    assert win.session.baseline == pytest.approx(acc)
    assert acc != pytest.approx(first)
    qtbot.waitUntil(line.isVisible)
    assert line.label.toPlainText() == f"float model {acc:.4f}"


def test_transform_notes_can_be_read_whole_on_a_small_screen(qtbot, window):
    """At 1366 x 768 the notes under Compute (three lines for smoothquant on tiny_lm) were
    cut off; the panel now scrolls and the notes are also the label's tooltip."""
    from PySide6.QtWidgets import QScrollArea

    win = window
    _small(qtbot, win)
    from PySide6.QtCore import QPoint

    from quantviz.gui.layer_table import C_NAME

    panel = win.transformsPanel
    box = panel.checks["smoothquant"]
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    view, m = win.table.view, win.table.model
    idx = win.table.proxy.mapFromSource(m.index_of("fc1", C_NAME))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center())
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)
    label = panel.notesLabel
    qtbot.waitUntil(lambda: label.text().startswith("fc1: smoothquant"))
    assert label.toolTip() == label.text()
    area = win.findChild(QScrollArea, "transformsScroll")
    assert area.widget() is panel

    def read_whole() -> bool:
        # the label's new minimum height reaches the scroll area a few events later (on a
        # slow machine after the first scroll): scroll to it as a user would, until settled
        area.ensureWidgetVisible(label, 0, 0)
        top = label.mapTo(area.viewport(), label.rect().topLeft()).y()
        need = label.heightForWidth(label.width())
        return label.height() >= need and top >= 0 and top + need <= area.viewport().height()

    qtbot.waitUntil(read_whole, timeout=5_000)


def test_compare_error_bars_name_layers_without_overlap(qtbot, window):
    """The compare view's per-layer bars use the same thinned, short layer names."""
    win = window
    qtbot.keyClick(win, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(win.compareDock.isVisible)
    bars = win.compareView.bars
    qtbot.waitUntil(lambda: bars.axis.names == ["conv1", "conv2", "fc1", "fc2"])
    qtbot.waitExposed(bars.plot)
    QApplication.processEvents()
    assert bars.axis.visible_labels() == ["conv1", "conv2", "fc1", "fc2"]


def _report(rho: dict[str, float]):
    from quantviz.core import QuantSpec
    from quantviz.eval.proxies import Measured, ProxyReport

    spec = QuantSpec(bits=4, granularity="per_channel")
    cands = [(f, spec) for f in ("conv1", "conv2", "fc1")]
    measured = {c: Measured(0.9 - 0.1 * i, 0.1 * i, 0.01 * i) for i, c in enumerate(cands)}
    values = {p: {c: float(i) for i, c in enumerate(cands)} for p in rho}
    return ProxyReport("accuracy", 0.98, cands, measured, values, rho, {})


def test_proxies_tab_trusts_no_proxy_whose_rho_is_not_positive(qtbot):
    """On digits at W4 every proxy's ρ was negative and the tab still said "trust
    output_sqnr on this model"."""
    from quantviz.gui.debug_view import DebugView

    view = DebugView()
    qtbot.addWidget(view)
    view.show_proxies(_report({"mse": -0.77, "output_sqnr": -0.26, "kl": -0.26}))
    text = view.rhoLabel.text()
    assert "trust" not in text.replace("rather than trust", "") and "every ρ ≤ 0" in text
    t = view.proxyTable
    assert not any(t.horizontalHeaderItem(j).font().bold() for j in range(t.columnCount()))
    view.show_proxies(_report({"mse": 0.4, "output_sqnr": 0.9, "kl": -0.2}))
    assert "trust output_sqnr on this model" in view.rhoLabel.text()
    assert t.horizontalHeaderItem(4).font().bold() and not t.horizontalHeaderItem(3).font().bold()
