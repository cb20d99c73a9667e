"""Run > Uniform sweep per method…: the user ticks two methods and gets two labelled curves
(issue 13), driven as a user would on digits_mobilenet at W3/W4 per tensor."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QDialogButtonBox, QLabel


def click_row(qtbot, win, fqn):
    view, model = win.table.view, win.table.model
    idx = win.table.proxy.mapFromSource(model.index_of(fqn))
    view.scrollTo(idx)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualRect(idx).center())


def tick(qtbot, box):
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def test_two_methods_ticked_give_two_curves_with_legend_names(window, qtbot):
    win = window
    with qtbot.waitSignals([win.modelLoaded, win.statsReady], timeout=120_000):
        win.open_model("sample:digits_mobilenet")
    s = win.session
    click_row(qtbot, win, "stem")
    c = win.controls
    c.granularityCombo.setCurrentIndex(c.granularityCombo.findData("per_tensor"))
    spin = c.bitsSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "4")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    qtbot.mouseClick(c.applyAllButton, Qt.MouseButton.LeftButton)
    assert s.config.resolve("fc").weight.granularity == "per_tensor"
    win.sweepBitsEdit.setText("3,4")
    assert win.sweepMethodsAction in win.runMenu.actions()
    assert win.sweepMethodsAction.isEnabled()
    seen = {}

    def fill() -> None:
        dlg = win.methodsDialog
        seen["defaults"] = [n for n, b in dlg.checks.items() if b.isChecked()]
        tick(qtbot, dlg.checks["gptq"])  # off: nearest and cle+bias_correction stay
        tick(qtbot, dlg.checks["hadamard"])  # on: it does not apply to a CNN
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as blocker:
        win.sweepMethodsAction.trigger()
    assert blocker.args == ["method sweep"]
    assert seen["defaults"] == ["nearest", "gptq", "cle+bias_correction"]
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 4)
    curves = [n for n in tp.legend_labels() if n.startswith("uniform")]
    assert curves == ["uniform W3,4 sym t nearest", "uniform W3,4 sym t cle+bias_correction"]
    assert all(len(tp.curves[n].xData) == 2 for n in curves)
    nearest, cle = (list(tp.curves[n].yData) for n in curves)
    assert min(cle) > max(nearest)  # CLE + bias correction lifts both widths
    msg = win.statusBar().currentMessage()
    assert "nearest, cle+bias_correction swept" in msg and "skipped hadamard (" in msg
    # a bad typed method is named in the dialog, which stays open; nothing starts
    n = len(s.results)
    shown = {}

    def bad() -> None:
        dlg = win.methodsDialog
        qtbot.keyClicks(dlg.extraEdit, "cle+foo")
        buttons = dlg.findChild(QDialogButtonBox)
        qtbot.mouseClick(
            buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton
        )
        shown["open"] = dlg.isVisible()
        shown["error"] = dlg.errorLabel.text() if dlg.errorLabel.isVisible() else ""
        shown["typed"] = dlg.extraEdit.text()
        qtbot.mouseClick(
            buttons.button(QDialogButtonBox.StandardButton.Cancel), Qt.MouseButton.LeftButton
        )

    QTimer.singleShot(0, bad)
    win.sweepMethodsAction.trigger()
    assert shown["open"] and "'foo' in 'cle+foo'" in shown["error"]
    assert shown["typed"] == "cle+foo"
    assert len(s.results) == n


def test_the_configured_alpha_goes_into_the_smoothquant_curve(window, qtbot):
    """The configuration has smoothquant at alpha 0.8 (typed into the transforms panel): the
    dialog's smoothquant box says so, its curve is swept at 0.8 (equal to evaluate() of the
    configuration built by hand), and a typed smoothquant(alpha=0.5) is its own curve."""
    from quantviz.core.spec import LayerConfig, ModelConfig
    from quantviz.eval import evaluate, run

    win = window
    s = win.session
    tp = win.transformsPanel
    tick(qtbot, tp.checks["smoothquant"])
    spin = tp.alphaSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "0.8")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: s.config.transforms == (("smoothquant", (("alpha", 0.8),)),))
    win.sweepBitsEdit.setText("3")
    seen = {}

    def fill() -> None:
        dlg = win.methodsDialog
        seen["text"] = dlg.checks["smoothquant"].text()
        note = dlg.findChild(QLabel, "methodsParamsNote")
        seen["note"] = note.text() if note is not None and note.isVisible() else None
        for name in ("gptq", "cle+bias_correction", "smoothquant"):
            tick(qtbot, dlg.checks[name])  # nearest and smoothquant left
        qtbot.keyClicks(dlg.extraEdit, "smoothquant(alpha=0.5), smoothquant(alpha=0.8)")
        ok = dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    n0 = len(s.results)
    QTimer.singleShot(0, fill)
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.sweepMethodsAction.trigger()
    assert seen["text"] == "smoothquant(alpha=0.8)"
    assert seen["note"] and "smoothquant(alpha=0.8)" in seen["note"]
    tp_plot = win.tradeoff

    def swept() -> list[str]:
        return [n for n in tp_plot.legend_labels() if n.startswith("uniform")]

    qtbot.waitUntil(lambda: len(swept()) == 3 and tp_plot.point_count() == n0 + 3)
    curves = swept()
    assert curves == [
        "uniform W3 sym ch nearest",
        "uniform W3 sym ch smoothquant(alpha=0.8)",
        "uniform W3 sym ch smoothquant",
    ]
    msg = win.statusBar().currentMessage()
    assert "nearest, smoothquant(alpha=0.8), smoothquant swept" in msg
    by = {e.series: e for e in s.results[n0:]}
    weight = s.config.default.weight.with_(bits=3)
    act = s.config.default.activation
    for name, alpha in ((curves[1], 0.8), (curves[2], 0.5)):
        e = by[name]
        assert e.config.transforms == (("smoothquant", (("alpha", alpha),)),)
        cfg = ModelConfig(
            default=LayerConfig(weight=weight, activation=act),
            transforms=[{"smoothquant": {"alpha": alpha}}],
        )
        ref = run(evaluate(s.handle, s.data, cfg))
        assert e.value == pytest.approx(ref.value, abs=1e-12), name
        assert list(tp_plot.curves[name].yData) == [pytest.approx(e.value, abs=1e-12)]
    assert by[curves[1]].value != by[curves[2]].value
