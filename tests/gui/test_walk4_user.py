"""Found walking the app as a user (walk4): each test drives the window and checks what shows."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainter


def _drawn_labels(axis):
    """The tick labels the axis paints now (its draw specs, as paint() uses them)."""
    img = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [text for _rect, _flags, text in specs[2]] if specs else []


def test_perplexity_axis_reads_values_over_a_narrow_range(window, qtbot, tmp_path):
    pytest.importorskip("transformers")
    from lm_models import random_tokens, tiny_llama
    from safetensors.torch import save_file

    model = tiny_llama()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "lm.st")
    np.savez(tmp_path / "tok.npz", input_ids=random_tokens(4, 16).numpy())
    win = window
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(f"{tmp_path / 'lm.st'}::lm_models:tiny_llama", str(tmp_path / "tok.npz"))
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
