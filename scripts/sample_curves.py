"""Accuracy vs model size of both bundled samples, per-tensor vs per-channel (README figure).

Runs the engine's uniform sweep (weights at 2..8 bits, activations float) on the bundled test
split and draws the curves offscreen with pyqtgraph into ``docs/sample_curves.png``; prints
the numbers as a Markdown table.

    python scripts/sample_curves.py [--out docs/sample_curves.png]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from quantviz.core import QuantSpec
from quantviz.data import load_data
from quantviz.eval import run, uniform_sweep
from quantviz.model import load_model

BITS = (2, 3, 4, 5, 6, 8)
COLOURS = {"per_tensor": "#d9480f", "per_channel": "#1c7ed6"}


def sweep(sample: str, granularity: str):
    handle = load_model(f"sample:{sample}")
    data = load_data(None, handle)
    res = run(uniform_sweep(handle, data, BITS, QuantSpec(granularity=granularity)))
    return res.points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/sample_curves.png")
    args = ap.parse_args()

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(antialias=True, background="w", foreground="#222")
    win = pg.GraphicsLayoutWidget()
    win.resize(1100, 420)
    print("| sample | granularity | " + " | ".join(f"W{b}" for b in BITS) + " | float |")
    print("|---|---|" + "---|" * (len(BITS) + 1))
    for col, sample in enumerate(("digits_cnn", "digits_mobilenet")):
        plot = win.addPlot(row=0, col=col, title=f"sample:{sample}")
        plot.setLabel("bottom", "model size", units="kB")
        plot.setLabel("left", "test accuracy", units="%")
        plot.showGrid(x=True, y=True, alpha=0.25)
        legend = plot.addLegend(offset=(-10, -10))
        baseline = None
        for gran, colour in COLOURS.items():
            pts = sweep(sample, gran)
            baseline = pts[0].baseline
            xs = [p.model_bytes / 1000 for p in pts]
            ys = [p.value * 100 for p in pts]
            plot.plot(
                xs,
                ys,
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolBrush=colour,
                symbolPen=None,
                name=gran.replace("_", "-"),
            )
            for x, y, b in zip(xs, ys, BITS):
                below = gran == "per_tensor"  # labels of the two curves on either side
                t = pg.TextItem(f"W{b}", color=colour, anchor=(0.5, -0.3 if below else 1.3))
                t.setPos(x, y)
                plot.addItem(t)
            cells = " | ".join(f"{y:.1f}%" for y in ys)
            print(f"| {sample} | {gran} | {cells} | {baseline * 100:.1f}% |")
        line = pg.InfiniteLine(
            pos=baseline * 100, angle=0, pen=pg.mkPen("#555", style=pg.QtCore.Qt.DashLine)
        )
        plot.addItem(line)
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#555", style=pg.QtCore.Qt.DashLine)), "float")
        plot.setYRange(0, 102)
    app.processEvents()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
