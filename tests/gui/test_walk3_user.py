"""Leftovers from walkthrough 3, each driven like a user and checked on what the user sees."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt
from test_main_window import click_row
from test_transforms_gui import tick


def shown(win, fqn: str, col: int, role=Qt.ItemDataRole.DisplayRole):
    """What the table view shows (through the sort/filter proxy) in ``fqn``'s row."""
    model = win.table.model
    idx = win.table.proxy.mapFromSource(model.index(model.row_of(fqn), col))
    return win.table.view.model().data(idx, role)


def test_table_act_column_says_an_embeddings_token_ids_are_not_quantized(window, qtbot, tmp_path):
    """W8A8 on every layer: the Act. column read "A8 sym t" for embed_tokens although
    evaluation passes its integer token ids through (the activation panel already said so)."""
    from test_before_after_gui import _llama_files

    pytest.importorskip("transformers")
    from quantviz.gui.layer_table import C_A

    win = window
    src, data = _llama_files(tmp_path)
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=120_000):
        win.open_model(src, data)
    c = win.controls
    click_row(qtbot, win, "model.embed_tokens")
    # weights only (the default): the ids are still not "float activations" one could
    # quantize by choosing Input activations
    assert win.session.config.resolve("model.embed_tokens").activation is None
    assert shown(win, "model.embed_tokens", C_A) == "—"
    tip = shown(win, "model.embed_tokens", C_A, Qt.ItemDataRole.ToolTipRole)
    assert "never quantized" in tip and "A8" not in tip, tip
    qtbot.waitUntil(lambda: "never quantized" in win.activations.info.text())
    assert "choose" not in win.activations.info.text()
    qtbot.mouseClick(c.activationRadio, Qt.MouseButton.LeftButton)
    tick(qtbot, c.floatCheck)
    qtbot.mouseClick(c.applyAllButton, Qt.MouseButton.LeftButton)
    assert win.session.config.resolve("model.embed_tokens").activation.bits == 8
    assert shown(win, "model.embed_tokens", C_A) == "—"
    tip = shown(win, "model.embed_tokens", C_A, Qt.ItemDataRole.ToolTipRole)
    assert "never quantized" in tip and "A8" in tip, tip
    # a linear layer of the same model keeps its scheme in the column
    lin = next(lay.fqn for lay in win.session.handle.layers if lay.kind == "linear")
    assert shown(win, lin, C_A).startswith("A8"), shown(win, lin, C_A)
    # the activation panel says the same (one predicate for both)
    assert "never quantized" in win.activations.info.text()


def test_tradeoff_legend_never_covers_the_evaluated_point(window, qtbot):
    """After F5 on a small window the legend box sat over the only evaluated point."""
    from test_small_screen_and_panels import _small

    win = window
    _small(qtbot, win)
    tp = win.tradeoff
    with qtbot.waitSignal(tp.pointsChanged, timeout=60_000, check_params_cb=lambda n: n >= 1):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    qtbot.waitExposed(tp)
    vb = tp.plot.getPlotItem().getViewBox()
    for size in ((360, 220), (300, 180), (600, 300)):
        tp.plot.setFixedSize(*size)
        qtbot.wait(50)
        legend = tp.legend.sceneBoundingRect()
        assert tp.legend.isVisible() and legend.width() > 0 and tp.legend_labels()
        xs, ys = tp.scatter.getData()
        assert len(xs) == 1
        for x, y in zip(xs, ys):
            p = vb.mapViewToScene(QPointF(float(x), float(y)))
            assert vb.sceneBoundingRect().contains(p)  # the point is in view
            assert not legend.adjusted(-5, -5, 5, 5).contains(p), (size, legend, p)


def test_tradeoff_legend_moves_off_a_point_a_pan_or_zoom_brought_under_it(window, qtbot):
    """The legend was placed only on a redraw: panning or zooming the trade-off plot could
    leave the evaluated point under it. It is re-placed shortly after the view range
    changes (once per burst, not on every mouse move of a drag)."""
    from test_small_screen_and_panels import _small

    win = window
    _small(qtbot, win)
    tp = win.tradeoff
    with qtbot.waitSignal(tp.pointsChanged, timeout=60_000, check_params_cb=lambda n: n >= 1):
        qtbot.keyClick(win, Qt.Key.Key_F5)
    qtbot.waitExposed(tp)
    vb = tp.plot.getPlotItem().getViewBox()
    (px,), (py,) = (list(map(float, a)) for a in tp.scatter.getData())

    def point() -> QPointF:  # where the user sees the point
        return vb.mapViewToScene(QPointF(px, py))

    def under_legend() -> bool:
        return tp.legend.sceneBoundingRect().adjusted(-5, -5, 5, 5).contains(point())

    assert not under_legend()
    for _ in range(2):  # twice: the legend leaves whichever corner the point is panned to
        corner = tp.legend_corner
        # pan (as a drag would, in small steps) until the point sits under the legend
        centre = vb.mapSceneToView(tp.legend.sceneBoundingRect().center())
        dx, dy = px - centre.x(), py - centre.y()
        (x0, x1), (y0, y1) = vb.viewRange()
        for step in (0.25, 0.5, 0.75, 1.0):
            vb.setRange(
                xRange=(x0 + step * dx, x1 + step * dx),
                yRange=(y0 + step * dy, y1 + step * dy),
                padding=0,
            )
        assert under_legend()  # the drag itself does not re-place it on every move
        qtbot.waitUntil(lambda: not under_legend(), timeout=2_000)
        assert tp.legend_corner != corner
        assert vb.sceneBoundingRect().contains(point())  # the pan kept the point in view


def test_ticking_transforms_keeps_the_panel_where_it_is(window, qtbot):
    """On a small window, scrolled to the bottom of the transforms panel: ticking a box
    changed the note under Compute (one line <-> two) and the panel jumped ~10 px, so a quick
    second click landed beside the next box."""
    from PySide6.QtWidgets import QScrollArea
    from test_small_screen_and_panels import _small
    from test_transforms_gui import tick

    win = window
    _small(qtbot, win)
    area = win.findChild(QScrollArea, "transformsScroll")
    sb = area.verticalScrollBar()
    checks = win.transformsPanel.checks
    assert sb.maximum() > 0  # the panel is scrolled at this size

    def seen(name):  # where the user sees the box
        return checks[name].mapTo(area.viewport(), checks[name].rect().topLeft())

    notes = set()
    for name in ("smoothquant", "cle", "smoothquant", "cle", "fold_bn", "fold_bn"):
        sb.setValue(sb.maximum())
        qtbot.wait(20)
        before, where, state = sb.value(), seen(name), checks[name].isChecked()
        tick(qtbot, checks[name])
        qtbot.wait(50)
        assert checks[name].isChecked() != state
        notes.add(win.transformsPanel.notesLabel.text())
        assert sb.value() == before and seen(name) == where, (name, before, sb.value())
    assert len(notes) >= 2  # the note did change under the boxes


def test_a_long_transform_note_leaves_no_blank_lines_once_the_user_moves_on(window, qtbot):
    """The steady note kept the room of its longest text forever: after a three-line note
    and then a one-line one, two blank lines stayed. The room now stays while the pointer is
    in the right-hand panels (no jump while ticking boxes there) and is released when the
    pointer leaves them or the selected layer changes."""
    from PySide6.QtCore import QEvent, QPoint, QRect
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QApplication, QScrollArea, QSplitter
    from test_small_screen_and_panels import _small

    win = window
    _small(qtbot, win)
    panel = win.transformsPanel
    label = panel.notesLabel
    box = panel.checks["smoothquant"]
    click_row(qtbot, win, "fc1")
    tick(qtbot, box)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: label.text().startswith("fc1: smoothquant"))
    fm = QFontMetrics(label.font())
    line = fm.lineSpacing()

    def need() -> int:  # the height the label's text takes, wrapped at its width
        w = label.contentsRect().width()
        return fm.boundingRect(QRect(0, 0, w, 10_000), wrap, label.text()).height()

    wrap = Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft
    tall = need()
    assert tall >= 2 * line, (tall, line, label.text())  # a note of several lines
    qtbot.waitUntil(lambda: label.height() >= tall)

    def fits() -> bool:  # the label's room is its text's (or its row's), no more
        row = max(need(), panel.computeButton.height())
        return label.minimumHeight() <= need() + 2 and label.height() <= row + 2

    # still in the panel: unticking gives a one-line note, and the room stays (no jump)
    area = win.findChild(QScrollArea, "transformsScroll")
    right = area.parentWidget()  # the right-hand column's splitter
    assert isinstance(right, QSplitter) and right.isAncestorOf(win.activations)

    def settled() -> bool:  # the panels have taken the computed notes' room
        sizes = right.sizes()
        qtbot.wait(50)
        return right.sizes() == sizes

    qtbot.waitUntil(settled)
    where = box.mapTo(area.viewport(), QPoint(0, 0)), box.mapTo(win, QPoint(0, 0))
    tick(qtbot, box)
    qtbot.waitUntil(lambda: not label.text().startswith("fc1: smoothquant"))
    short = need()
    assert short < tall - line // 2, (short, tall, label.text())
    qtbot.wait(50)
    assert label.minimumHeight() >= tall and label.height() >= tall
    # the box stays where the user sees it, in its panel and in the window (the emptied
    # before / after line under the activations keeps its room too)
    assert (box.mapTo(area.viewport(), QPoint(0, 0)), box.mapTo(win, QPoint(0, 0))) == where
    # the pointer moves on to the weight histogram: the blank lines go (offscreen, a
    # test's mouse move brings no enter / leave events: send the right-hand column's
    # leave as the window system does)
    plot = win.histogram.plot
    qtbot.mouseMove(plot, plot.rect().center())
    QApplication.sendEvent(right, QEvent(QEvent.Type.Leave))
    qtbot.waitUntil(fits, timeout=5_000)
    assert label.height() < tall
    # the emptied before / after line under the activations goes too
    assert win.activations.compareLabel.text() == ""
    assert not win.activations.compareLabel.isVisible()
    # back in the panel, a long note again, then another layer chosen with the keyboard
    # (the pointer stays over the panel): the new layer's note gets only its own room
    tick(qtbot, box)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        qtbot.mouseClick(panel.computeButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: label.text().startswith("fc1: smoothquant"))
    qtbot.waitUntil(lambda: label.minimumHeight() >= tall)
    tick(qtbot, box)
    qtbot.waitUntil(lambda: not label.text().startswith("fc1: smoothquant"))
    assert label.minimumHeight() >= tall  # kept while on fc1
    view = win.table.view
    view.setFocus()
    before = win.session.selection
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: win.session.selection != before)
    qtbot.waitUntil(fits, timeout=5_000)
    assert label.minimumHeight() < tall


def test_with_no_model_the_plots_show_an_empty_labelled_state(qtbot):
    """Before a model is open the weight histogram read "count (x0.001)" from -400 to 400 and
    the channel-range plot "output channel (x0.001)": plain empty axes and a title saying
    there is no model instead."""
    from quantviz.gui.app import _app
    from quantviz.gui.main_window import MainWindow

    _app()
    win = MainWindow()
    win.confirm_close = lambda: "discard"
    qtbot.addWidget(win)
    win.resize(1366, 740)
    win.show()
    qtbot.waitExposed(win)
    assert win.session.handle is None
    hist = win.histogram.plot.getPlotItem()
    assert "No model" in hist.titleLabel.text
    assert "no model" in win.tradeoff.plot.getPlotItem().titleLabel.text
    for pi in (hist, win.histogram.rangePlot.getPlotItem(), win.tradeoff.plot.getPlotItem()):
        for name in ("left", "bottom"):
            axis = pi.getAxis(name)
            assert "x0.001" not in axis.labelString() and "(x" not in axis.labelString()
        (x0, x1), (y0, y1) = pi.getViewBox().viewRange()
        assert x0 >= 0 and y0 >= 0 and x1 <= 1.1 and y1 <= 1.1, pi.getViewBox().viewRange()
    assert not win.histogram.range_lo.isVisible() and not win.histogram.range_hi.isVisible()
    assert win.shutdown(timeout=30)
