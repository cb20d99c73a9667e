"""The error-propagation dock: run it from the Run menu, hover and click a bar."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication


def _view_pos(view, layer: int, cumulative: bool = True):
    scene = view.bar_center(layer, cumulative)
    return view.plot.mapFromScene(scene)


def _hover(view, pos) -> None:
    vp = view.plot.viewport()
    ev = QMouseEvent(
        QEvent.Type.MouseMove,
        QPointF(pos),
        vp.mapToGlobal(QPointF(pos)),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(vp, ev)


def test_debug_strip_plot_click_selects_the_layer(qtbot, window):
    win = window
    assert win.debugDock.isHidden()
    run_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Run")
    assert win.debugAction in run_menu.actions() and win.proxiesAction in run_menu.actions()
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as blocker:
        win.debugAction.trigger()
    assert blocker.args == ["debug"]
    view = win.debugView
    assert win.debugDock.isVisible() and view.currentIndex() == 0
    assert view.fqns == ["conv1", "conv2", "fc1", "fc2"]
    res = win.controller.debug_result
    heights = list(view.cum.opts["height"])
    assert heights == pytest.approx([lay.cumulative.sqnr_db for lay in res.layers])
    assert "4 layers" in view.summaryLabel.text() and "Flagged" in view.summaryLabel.text()
    qtbot.waitExposed(view.plot)
    # hover over fc1's cumulative bar: its name and numbers
    _hover(view, _view_pos(view, 2))
    assert view.hover_text.startswith("fc1") and "cumulative: SQNR" in view.hover_text
    assert win.session.selection == ("conv1",)
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=_view_pos(view, 2))
    assert win.session.selection == ("fc1",)
    assert win.table.selected_fqns() == ("fc1",)
    qtbot.mouseClick(
        view.plot.viewport(), Qt.MouseButton.LeftButton, pos=_view_pos(view, 1, cumulative=False)
    )
    assert win.table.selected_fqns() == ("conv2",)


def test_flagged_bars_are_red(qtbot, window):
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec

    win = window
    win.push_config(ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2))), "W2 t")
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        win.debugView.runButton.click()
    res = win.controller.debug_result
    view = win.debugView
    assert res.config.default.weight.bits == 2
    flagged = [i for i, lay in enumerate(res.layers) if lay.flagged]
    assert list(view.flags.data["x"]) == flagged
    brushes = view.cum.opts["brushes"]
    for i, lay in enumerate(res.layers):
        assert (brushes[i].color().name() == "#e03131") == lay.flagged


@pytest.mark.slow
def test_proxies_tab_shows_rankings_and_spearman(qtbot, window):
    win = window
    win.sensitivityBitsEdit.setText("3")
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as blocker:
        win.proxiesAction.trigger()
    assert blocker.args == ["proxies"]
    view = win.debugView
    rep = win.controller.proxy_report
    assert view.currentIndex() == 1 and win.debugDock.isVisible()
    t = view.proxyTable
    assert t.rowCount() == 4 and t.columnCount() == 3 + 5
    heads = [t.horizontalHeaderItem(j).text() for j in range(t.columnCount())]
    assert heads[3].startswith("mse") and "ρ" in heads[3]
    assert "Spearman" in view.rhoLabel.text()
    # rows by measured drop; each proxy column holds that proxy's rank of the layer
    first = rep.by_drop()[0]
    assert t.item(0, 0).text() == first[0]
    assert t.item(0, 3).text() == str(rep.ranking("mse").index(first) + 1)
    qtbot.mouseClick(
        t.viewport(), Qt.MouseButton.LeftButton, pos=t.visualItemRect(t.item(1, 0)).center()
    )
    assert win.session.selection == (t.item(1, 0).text(),)
