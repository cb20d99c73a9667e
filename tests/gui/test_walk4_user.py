"""Found walking the app as a user (walk4): each test drives the window and checks what shows."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QScrollArea


def tick(qtbot, box) -> None:
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def _drawn_labels(axis):
    """The tick labels the axis paints now (its draw specs, as paint() uses them)."""
    img = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [text for _rect, _flags, text in specs[2]] if specs else []


def _open_tiny_llama(qtbot, win, tmp_path) -> None:
    pytest.importorskip("transformers")
    from lm_models import random_tokens, tiny_llama
    from safetensors.torch import save_file

    model = tiny_llama()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "lm.st")
    np.savez(tmp_path / "tok.npz", input_ids=random_tokens(4, 16).numpy())
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(f"{tmp_path / 'lm.st'}::lm_models:tiny_llama", str(tmp_path / "tok.npz"))


def test_perplexity_axis_reads_values_over_a_narrow_range(window, qtbot, tmp_path):
    win = window
    _open_tiny_llama(qtbot, win, tmp_path)
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        qtbot.keyClick(win, Qt.Key.Key_F5)  # W8: perplexity within a hair of float
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 1)
    pi = tp.plot.getPlotItem()
    left = pi.getAxis("left")
    assert tp.log_y and left.logMode
    lo, hi = (10.0**v for v in pi.getViewBox().viewRange()[1])
    assert hi / lo < 10  # under a decade: pyqtgraph's log ticks label one value or none
    labels = _drawn_labels(left)
    values = [float(t) for t in labels]  # plain numbers, not "1·10²"
    assert len(values) >= 2 and len(set(labels)) == len(labels)
    assert all(lo <= v <= hi for v in values)
    # on a 1366 x 768 screen the plot is ~180 px tall: still two values or more
    win.resize(1297, 729)
    qtbot.waitUntil(lambda: win.size().toTuple() == (1297, 729))
    qtbot.wait(50)
    assert len(_drawn_labels(left)) >= 2, (_drawn_labels(left), left.height())


def _set_override(qtbot, win, pattern: str) -> None:
    ed = win.overrides
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, pattern)
    qtbot.mouseClick(ed.setButton, Qt.MouseButton.LeftButton)


def test_two_overrides_show_whole_on_a_1366x768_screen(window, qtbot):
    """At 1297 x 729 (a 1366 x 768 screen) the override list showed half a row: the empty
    layer table kept its 560 px while the override editor shrank to ~130 px."""
    win = window
    win.resize(1297, 729)
    qtbot.waitUntil(lambda: win.size().toTuple() == (1297, 729))
    _set_override(qtbot, win, "conv*")
    _set_override(qtbot, win, "fc*")
    ed = win.overrides
    assert ed.list.count() == 2
    qtbot.wait(50)
    area = win.findChild(QScrollArea, "overridesScroll")
    port = area.viewport()
    shown = port.rect()
    assert area.verticalScrollBar().maximum() == 0  # the editor fits: nothing to scroll
    for i in range(ed.list.count()):
        r = ed.list.visualItemRect(ed.list.item(i))
        top = ed.list.viewport().mapTo(port, r.topLeft())
        bottom = ed.list.viewport().mapTo(port, r.bottomLeft())
        assert ed.list.viewport().rect().contains(r), f"row {i} cut by the list"
        assert shown.contains(top) and shown.contains(bottom), f"row {i} scrolled out of view"
    # the Set button and the buttons under the list are in view too, without scrolling
    for w in (ed.setButton, ed.deleteButton):
        g = w.rect()
        assert shown.contains(w.mapTo(port, g.bottomRight())), w.objectName()


def test_a_pattern_missing_the_model_prefix_names_the_one_that_matches(window, qtbot, tmp_path):
    """The placeholder's ``re:layers\\.…`` matched nothing on a Llama (its layers are
    ``model.layers.N…``, a whole-name match) and the editor said only "no layer matches"."""
    win = window
    _open_tiny_llama(qtbot, win, tmp_path)
    ed = win.overrides
    block1 = [n for n in win.session.fqns if n.startswith("model.layers.1.")]
    assert block1
    for typed, hint in (
        ("re:layers\\.1\\..*", "re:.*layers\\.1\\..*"),
        ("layers.1.*", "*layers.1.*"),
    ):
        ed.pattern.clear()
        qtbot.keyClicks(ed.pattern, typed)
        text = ed.matchLabel.text()
        assert text.startswith("no layer matches") and f"{hint} matches {len(block1)}" in text
        assert not ed.setButton.isEnabled()
        ed.pattern.clear()
        qtbot.keyClicks(ed.pattern, hint)  # what the message says works
        assert ed.matchLabel.text() == f"{len(block1)} layers match" and ed.setButton.isEnabled()
    ed.pattern.clear()
    qtbot.keyClicks(ed.pattern, "re:nothing_here")
    assert ed.matchLabel.text() == "no layer matches"


def test_long_layer_titles_fit_their_plots(window, qtbot, tmp_path):
    """At 1366 x 768 ``model.layers.1.mlp.down_proj — 131,072 weights, group 0 of 1024`` ran
    off the histogram's right edge (and the activation plot's title likewise)."""
    win = window
    _open_tiny_llama(qtbot, win, tmp_path)
    win.resize(1050, 729)  # about the narrowest the window goes: titles need the most room
    qtbot.waitUntil(lambda: win.width() < 1200)
    fqn = "model.layers.1.mlp.down_proj"
    qtbot.keyClicks(win.table.filter, "layers.1.mlp.down")  # the user filters and clicks
    view, model = win.table.view, win.table.model
    idx = win.table.proxy.mapFromSource(model.index_of(fqn))
    view.scrollTo(idx)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center())
    assert win.session.selection == (fqn,)
    hist, acts = win.histogram.plot, win.activations.plot
    qtbot.waitUntil(lambda: fqn in hist.getPlotItem().titleLabel.text, timeout=30_000)
    qtbot.waitUntil(lambda: fqn in acts.getPlotItem().titleLabel.text, timeout=60_000)
    qtbot.wait(50)
    for pw in (hist, acts):
        label = pw.getPlotItem().titleLabel
        shown = label.item.sceneBoundingRect()  # where it is drawn in the plot widget
        assert shown.left() >= 0 and shown.right() <= pw.width(), (label.text, shown, pw.width())
    label = hist.getPlotItem().titleLabel  # this one is too long for 400 px: elided
    assert label.text.endswith("…") and label.text.startswith(fqn)
    assert label.toolTip() == f"{fqn} — 8,192 weights, channel 0 of 64"  # whole in the tip
    # wider again: the whole title comes back
    win.resize(1900, 729)
    qtbot.waitUntil(lambda: "…" not in hist.getPlotItem().titleLabel.text)


def test_weight_numbers_with_a_comparison_are_not_cut_off(window, qtbot):
    """With a second quantizer (or the weights after transforms) the stats under the
    histogram wrap to five lines at 1366 x 768; the label kept three and cut the rest."""
    win = window
    win.resize(1297, 729)
    qtbot.waitUntil(lambda: win.size().toTuple() == (1297, 729))
    hv = win.histogram
    view, model = win.table.view, win.table.model
    idx = win.table.proxy.mapFromSource(model.index_of("conv2"))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center())
    combo = hv.compareQuantizerCombo
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        combo.setCurrentIndex(combo.findData("nf4"))
    lab = hv.statsLabel
    assert lab.text().count("SQNR") == 2
    qtbot.wait(50)
    # Qt's own layout of the label's text at its width must fit the height it is given
    assert lab.heightForWidth(lab.width()) <= lab.height()
    assert lab.geometry().bottom() <= hv.height()
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        combo.setCurrentIndex(combo.findData(None))
    qtbot.wait(50)
    assert lab.heightForWidth(lab.width()) <= lab.height()


def test_a_bad_method_keeps_the_sweep_dialog_and_its_choices(window, qtbot):
    """A typo in the methods field closed the dialog with an error box: reopening it, the
    typed methods and the unticked defaults were gone."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QDialogButtonBox

    win = window
    win.sweepBitsEdit.setText("3")
    seen = {}

    def fill() -> None:
        dlg = win.methodsDialog
        tick(qtbot, dlg.checks["gptq"])  # untick
        qtbot.keyClicks(dlg.extraEdit, "smoothquant(alpha=2)")
        buttons = dlg.findChild(QDialogButtonBox)
        qtbot.mouseClick(
            buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton
        )
        seen["open"] = dlg.isVisible()
        seen["error"] = dlg.errorLabel.text() if dlg.errorLabel.isVisible() else ""
        seen["ticked"] = [n for n, b in dlg.checks.items() if b.isChecked()]
        # the user fixes the value in place and sweeps
        dlg.extraEdit.selectAll()
        qtbot.keyClicks(dlg.extraEdit, "smoothquant(alpha=0.8)")
        seen["cleared"] = not dlg.errorLabel.isVisible()
        tick(qtbot, dlg.checks["cle+bias_correction"])
        qtbot.mouseClick(
            buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton
        )

    reported = []
    win.errors.report = lambda title, exc: reported.append(str(exc))  # (no modal box here)
    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=60_000, raising=False):
        win.sweepMethodsAction.trigger()
    assert not reported
    assert seen["open"] and "smoothquant.alpha: must be in [0.0, 1.0], got 2" in seen["error"]
    assert seen["ticked"] == ["nearest", "cle+bias_correction"] and seen["cleared"]
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 2)
    names = [n for n in tp.legend_labels() if n.startswith("uniform")]
    assert names == ["uniform W3 sym ch nearest", "uniform W3 sym ch smoothquant(alpha=0.8)"]


def test_compare_copy_bar_shows_whole_configuration_names(window, qtbot):
    """In the compare dock at 1366 x 768 the "to" combo read "default qa" (for "default
    qat-ste"): the copy button's long sentence took the room."""
    win = window
    s = win.session
    s.save_as("default qat-ste")
    win.resize(1297, 729)
    qtbot.keyClick(win, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    cv = win.compareView
    qtbot.waitUntil(lambda: win.compareDock.isVisible())
    win.compareDock.resize(1215, 690)  # as it opens on that screen
    with qtbot.waitSignal(cv.histogramsUpdated, timeout=10_000):
        cv.set_compared(["default", "default qat-ste"])
    with qtbot.waitSignal(cv.histogramsUpdated, timeout=10_000):
        cv.select_layer("conv1")
    qtbot.wait(50)
    assert cv.targetCombo.currentText() == "default qat-ste"
    for combo in (cv.sourceCombo, cv.targetCombo):
        need = combo.fontMetrics().horizontalAdvance(combo.currentText())
        assert combo.width() >= combo.sizeHint().width() and combo.width() > need + 20
    assert cv.copyButton.text() == "Copy conv1"
    assert "default and default qat-ste" in cv.copyButton.toolTip()  # (the same: nothing to copy)


def test_no_layer_selected_shows_no_grid_legend(window, qtbot):
    """Filtering the selected layer away left "Select a layer" over an empty plot whose
    legend still named the last layer's grid (grid W8 sym ch, 256 levels)."""
    win = window
    hv = win.histogram
    view, model = win.table.view, win.table.model
    idx = win.table.proxy.mapFromSource(model.index_of("conv2"))
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        qtbot.mouseClick(
            view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center()
        )
    assert hv.legend.isVisible()
    assert "levels" in hv.legend.getLabel(hv.grid_item).text
    qtbot.keyClicks(win.table.filter, "nothing_like_this")
    qtbot.waitUntil(lambda: "Select a layer" in hv.plot.getPlotItem().titleLabel.text)
    assert not hv.legend.isVisible()
    win.table.filter.clear()
    idx = win.table.proxy.mapFromSource(model.index_of("fc1"))
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        qtbot.mouseClick(
            view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center()
        )
    assert hv.legend.isVisible() and "levels" in hv.legend.getLabel(hv.grid_item).text
