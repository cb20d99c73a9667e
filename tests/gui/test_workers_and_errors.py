"""The worker wiring (threads, progress, cancel, stale results), errors, and a signal stress
test guarding against the PySide6 6.12 bool_dealloc regression."""

import sys
import threading

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QObject, Signal

from quantviz.gui.errors import ErrorReporter, guarded, install_excepthook
from quantviz.gui.workers import Runner, progress_of


def test_progress_of_understands_engine_events():
    from quantviz.eval import Progress

    assert progress_of(Progress(1, 4, "forward")) == (0.25, "forward 1/4")
    assert progress_of(0.5) == (0.5, "")
    assert progress_of((3, 6)) == (0.5, "3/6")
    assert progress_of("an item") is None
    assert progress_of(True) is None


def test_runner_delivers_progress_items_and_result_off_thread(qtbot):
    r = Runner()
    gui = threading.get_ident()
    seen_threads = []
    items, progress = [], []
    r.yielded.connect(items.append)
    r.progress.connect(lambda f, m: progress.append(f))

    def gen():
        seen_threads.append(threading.get_ident())
        for i in range(3):
            yield (i + 1, 3)
            yield f"item {i}"
        return "done"

    with qtbot.waitSignal(r.finished, timeout=10_000) as blocker:
        r.start("test", gen)
    assert blocker.args == ["done"]
    assert items == ["item 0", "item 1", "item 2"]
    assert progress == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert seen_threads and seen_threads[0] != gui
    assert not r.running


def test_runner_cancel_stops_generator_and_replace_drops_stale(qtbot):
    r = Runner()
    closed = threading.Event()
    go = threading.Event()

    def endless():
        try:
            while True:
                go.wait(5)
                yield "tick"
        finally:
            closed.set()

    finished = []
    r.finished.connect(finished.append)
    with qtbot.waitSignal(r.yielded, timeout=10_000):
        r.start("endless", endless)
        go.set()
    # replace: a new run cancels the old one; only the new run's result arrives
    with qtbot.waitSignal(r.finished, timeout=10_000) as blocker:
        r.start("short", lambda: iter([]))
    assert blocker.args == [None]
    assert closed.wait(10)
    assert finished == [None]


def test_runner_failure_is_reported(qtbot):
    r = Runner()

    def bad():
        yield 0.1
        raise ValueError("layer x: broken")

    with qtbot.waitSignal(r.failed, timeout=10_000) as blocker:
        r.start("bad", bad)
    assert str(blocker.args[0]) == "layer x: broken"


def test_large_layer_requantized_in_worker(qtbot, monkeypatch, tensor_handle):
    """Above the inline limit the histogram is computed off the GUI thread."""
    from quantviz.app import AppController
    from quantviz.gui import histogram_view
    from quantviz.gui.histogram_view import HistogramView
    from quantviz.session import Session

    monkeypatch.setattr(histogram_view, "INLINE_LIMIT", 10_000)
    s = Session()
    ctl = AppController(s)
    s.set_model(tensor_handle({"big": torch.randn(256, 512)}))
    hv = HistogramView(ctl)
    qtbot.addWidget(hv)
    computing = []
    hv.computing.connect(computing.append)
    with qtbot.waitSignal(hv.updated, timeout=20_000):
        s.select(["big"])
    assert computing[0] is True
    assert hv.level_count() == 256
    # two quick edits: only the last one is shown
    with qtbot.waitSignal(hv.updated, timeout=20_000):
        s.set_layer_spec(["big"], "weight", s.config.default.weight.with_(bits=6))
        s.set_layer_spec(["big"], "weight", s.config.default.weight.with_(bits=2))
    assert hv.level_count() == 4
    assert hv.runner.shutdown(10)


class _Reporter(QObject):
    def __init__(self):
        super().__init__()
        self.errors = ErrorReporter()

    @guarded("Doing the thing")
    def slot(self):
        raise ValueError("conv1: bits: must be 1..16, got 0")


def test_guarded_slot_reports_instead_of_raising(qtbot):
    o = _Reporter()
    with qtbot.waitSignal(o.errors.errorShown) as blocker:
        assert o.slot() is None
    assert blocker.args == ["Doing the thing", "conv1: bits: must be 1..16, got 0"]
    box = o.errors.last_box
    assert "ValueError" in box.detailedText()
    box.close()


def test_excepthook_routes_uncaught_errors(qtbot):
    rep = ErrorReporter()
    previous = sys.excepthook
    restore = install_excepthook(rep)
    assert sys.excepthook is not previous
    try:
        with qtbot.waitSignal(rep.errorShown) as blocker:
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                sys.excepthook(*sys.exc_info())
        assert blocker.args == ["Unexpected error", "boom"]
    finally:
        restore()
        rep.last_box.close()
    assert sys.excepthook is previous  # the previous hook is back


class _Emitter(QObject):
    sig = Signal(int)
    flag = Signal(bool)


def test_many_emits_with_setdata_and_repaint(qtbot):
    """5000 signal emits (ints and bools), each updating a plot item with setData, with
    repaints: PySide6 6.12.0 on Python < 3.12 aborts after ~1000 emits (bool_dealloc)."""
    pw = pg.PlotWidget()
    qtbot.addWidget(pw)
    pw.show()
    item = pw.plot([0, 1], [0, 1], connect="pairs")
    x = np.repeat(np.linspace(-1, 1, 16), 2)
    y = np.tile([0.0, 1.0], 16)
    e = _Emitter()
    count = [0, 0]

    def on_int(i):
        item.setData(x + i * 1e-4, y)
        count[0] += 1
        if i % 10 == 0:
            pw.repaint()

    e.sig.connect(on_int)
    e.flag.connect(lambda b: count.__setitem__(1, count[1] + int(b)))
    for i in range(5000):
        e.sig.emit(i)
        e.flag.emit(i % 2 == 0)
    assert count == [5000, 2500]
    assert len(item.xData) == 32


def test_run_opens_the_sample_and_returns_when_closed(qapp):
    """``quantviz`` (no arguments) -> gui.app.run(): the window opens the bundled sample;
    the excepthook guard is installed while it runs and removed after."""
    from PySide6.QtCore import QTimer

    from quantviz.gui import app as app_mod

    hook_before = sys.excepthook
    seen = []

    def poke():
        wins = [
            w for w in qapp.topLevelWidgets() if w.objectName() == "mainWindow" and w.isVisible()
        ]
        if not wins:
            QTimer.singleShot(20, poke)
            return
        win = wins[-1]

        def done(*_):
            seen.append((win.session.handle.name, sys.excepthook is not hook_before))
            win.close()
            qapp.quit()

        if win.session.handle is not None:
            done()
        else:
            win.modelLoaded.connect(done)

    QTimer.singleShot(0, poke)
    assert app_mod.run() == 0
    assert seen == [("digits_cnn", True)]
    assert sys.excepthook is hook_before
