"""GUI latency benchmarks (offscreen). Prints a table; nothing is asserted.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py [--quick]

1. bits change -> repainted histogram + grid + numbers (+ table row) for layers of 100k, 1M
   and 10M parameters (targets: <= 30 / 60 / 300 ms median; the 10M one runs in a worker,
   and the longest GUI-thread stall while it runs is reported too);
2. the longest GUI-thread stall while an evaluation sweep runs (timer probe; <= 50 ms);
3. start-up to the first painted main window vs the floor: import torch + pyqtgraph and
   show an empty plot (target <= 1.5x);
4. a synthetic 320-layer decoder-shaped model (53 blocks of q/k/v/o + up/down projections,
   plus embed and lm_head): time to a filled, painted layer table (blocks collapsed and all
   expanded), then the SQNR of every layer computed in the worker: how long, how many
   repaint batches, and the longest GUI-thread stall while the column fills (timer probe).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class StallProbe:
    """A 5 ms QTimer; the longest gap between its ticks minus the period is the stall."""

    def __init__(self, period_ms: int = 5) -> None:
        from PySide6.QtCore import QTimer

        self.period = period_ms / 1000
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.worst = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last - self.period)
        self.last = now

    def start(self) -> None:
        self.worst = 0.0
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        self._tick()
        return self.worst


def wait_signal(signal, timeout: float = 120.0) -> None:
    from quantviz.gui.workers import wait_for_signal

    wait_for_signal(signal, timeout)


def bench_bits_change(sizes: list[int], reps: int) -> list[tuple[str, float, float, str]]:
    import torch
    from PySide6.QtWidgets import QApplication, QSplitter

    from quantviz.app import AppController
    from quantviz.gui.histogram_view import INLINE_LIMIT, HistogramView
    from quantviz.gui.layer_table import LayerTableWidget
    from quantviz.model.handle import LayerInfo, ModelHandle
    from quantviz.session import Session

    torch.manual_seed(0)
    app = QApplication.instance()
    mod = torch.nn.Module()
    layers = []
    for n in sizes:
        rows = 1000 if n >= 1_000_000 else 250
        w = torch.randn(rows, n // rows) * 0.05
        lin = torch.nn.Linear(w.shape[1], rows, bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        name = f"L{n}"
        mod.add_module(name, lin)
        layers.append(LayerInfo(name, "linear", tuple(w.shape), n, class_name="Linear"))
    handle = ModelHandle("bench", "bench", mod, layers, torch.zeros(1, 1))
    s = Session()
    ctl = AppController(s)
    split = QSplitter()
    table = LayerTableWidget(ctl, split)
    hv = HistogramView(ctl, split)
    hv.failed.connect(lambda m: print("histogram failed:", m, file=sys.stderr))
    split.resize(1400, 800)
    split.show()
    s.set_model(handle)
    app.processEvents()
    out = []
    probe = StallProbe()
    for lay in layers:
        s.select([lay.fqn])
        threaded = lay.params > INLINE_LIMIT
        if threaded:
            wait_signal(hv.updated)
        times, stalls = [], []
        for i in range(reps + 1):
            bits = 7 - (i % 5)  # always differs from the previous edit
            spec = s.config.default.weight.with_(bits=bits)
            probe.start()
            t0 = time.perf_counter()
            s.set_layer_spec([lay.fqn], "weight", spec)
            if threaded:
                wait_signal(hv.updated)
            hv.plot.repaint()
            table.view.viewport().repaint()
            dt = time.perf_counter() - t0
            stall = probe.stop()
            assert hv.level_count() == 2**bits, (hv.level_count(), bits)
            if i:  # the first one computes the layer's float histogram (once per layer)
                times.append(dt)
                stalls.append(stall)
        where = "worker" if threaded else "inline"
        out.append(
            (
                f"{lay.params / 1e6:g}M" if lay.params >= 1e6 else f"{lay.params // 1000}k",
                1000 * statistics.median(times),
                1000 * max(stalls),
                where,
            )
        )
    split.close()
    return out


def synthetic_blocks(n_blocks: int = 53, dim: int = 128, hidden: int = 256):
    """A ModelHandle of ``embed``, ``layers.{i}.self_attn.{q,k,v,o}_proj``,
    ``layers.{i}.mlp.{up,down}_proj`` and ``lm_head`` Linear layers (random weights)."""
    import torch

    from quantviz.model.handle import LayerInfo, ModelHandle

    torch.manual_seed(0)
    mod = torch.nn.Module()
    layers = []

    def add(name: str, out_f: int, in_f: int) -> None:
        lin = torch.nn.Linear(in_f, out_f, bias=False)
        parent = mod
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, lin)
        layers.append(LayerInfo(name, "linear", (out_f, in_f), out_f * in_f, class_name="Linear"))

    add("embed", dim, dim)
    for i in range(n_blocks):
        for p in ("q", "k", "v", "o"):
            add(f"layers.{i}.self_attn.{p}_proj", dim, dim)
        add(f"layers.{i}.mlp.up_proj", hidden, dim)
        add(f"layers.{i}.mlp.down_proj", dim, hidden)
    add("lm_head", dim, dim)
    return ModelHandle("bench", "blocks", mod, layers, torch.zeros(1, dim))


def bench_table_scale() -> dict[str, float]:
    from PySide6.QtWidgets import QApplication

    from quantviz.app import AppController
    from quantviz.gui.layer_table import LayerTableWidget
    from quantviz.gui.workers import Runner
    from quantviz.session import Session

    app = QApplication.instance()
    handle = synthetic_blocks()
    s = Session()
    ctl = AppController(s)
    table = LayerTableWidget(ctl)
    table.resize(640, 900)
    table.show()
    app.processEvents()
    out: dict[str, float] = {"layers": len(handle.layers)}
    probe = StallProbe()
    t0 = time.perf_counter()
    s.set_model(handle)
    app.processEvents()
    table.view.viewport().repaint()
    out["fill_ms"] = 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    table.view.expandAll()
    app.processEvents()
    table.view.viewport().repaint()
    out["expand_ms"] = 1000 * (time.perf_counter() - t0)
    batches: list[int] = []
    table.model.dataChanged.connect(lambda *_: batches.append(1))
    runner = Runner("sqnr")
    runner.yielded.connect(lambda item: ctl.sqnr.record([item]))
    todo = ctl.sqnr_todo()
    job = ctl.sqnr_job(todo)
    probe.start()
    t0 = time.perf_counter()
    runner.start(job.label, job.factory)
    wait_signal(runner.finished, 600)
    while table.model._pending or table.model._flush.isActive():
        app.processEvents()
    out["sqnr_s"] = time.perf_counter() - t0
    out["sqnr_stall_ms"] = 1000 * probe.stop()
    out["values"] = len(todo)
    out["batches"] = len(batches)
    # the GUI-thread cost of one arriving value (record + the table's bookkeeping)
    import math

    items = [(f, spec, 10.0 + (i % 7)) for i, (f, spec) in enumerate(todo)]
    ctl.sqnr.clear()
    t0 = time.perf_counter()
    for it in items:
        ctl.sqnr.record([it])
    out["per_value_us"] = 1e6 * (time.perf_counter() - t0) / len(items)
    t0 = time.perf_counter()
    table.model.flush_metrics()
    table.view.viewport().repaint()
    out["flush_ms"] = 1000 * (time.perf_counter() - t0)
    assert not math.isnan(out["flush_ms"])
    runner.shutdown()
    table.close()
    return out


def bench_eval_stall(model: str) -> tuple[float, float, int]:
    from quantviz.gui.app import create_main_window

    win = create_main_window(model)
    win.confirm_close = lambda: "discard"
    win.show()
    wait_signal(win.statsReady)
    probe = StallProbe()
    probe.start()
    t0 = time.perf_counter()
    win.uniform_sweep()
    wait_signal(win.jobDone, 300)
    dt = time.perf_counter() - t0
    stall = probe.stop()
    n = len(win.session.results)
    win.close()
    return 1000 * stall, dt, n


FLOOR = """
import time, sys
t0 = time.perf_counter()
import torch, pyqtgraph as pg
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
pw = pg.PlotWidget(); pw.resize(1600, 1000); pw.show(); app.processEvents(); pw.repaint()
print(time.perf_counter() - t0)
"""

APP = """
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from quantviz.gui.app import create_main_window
win = create_main_window()
win.confirm_close = lambda: "discard"
win.show()
from PySide6.QtWidgets import QApplication
QApplication.processEvents(); win.repaint()
t1 = time.perf_counter() - t0
from PySide6.QtCore import QEventLoop
loop = QEventLoop(); win.modelLoaded.connect(loop.quit); loop.exec()
QApplication.processEvents(); win.repaint()
print(t1, time.perf_counter() - t0)
win.close()
"""


def bench_startup(reps: int) -> tuple[float, float, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")

    def run(code: str) -> list[float]:
        r = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        )
        return [float(v) for v in r.stdout.split()]

    floor = [run(FLOOR)[0] for _ in range(reps)]
    app = [run(APP.format(root=str(ROOT))) for _ in range(reps)]
    return (
        statistics.median(floor),
        statistics.median(a[0] for a in app),
        statistics.median(a[1] for a in app),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--table", action="store_true", help="only the 320-layer table benchmark")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    reps = 5 if args.quick else 15
    if args.table:
        sc = bench_table_scale()
        print("  ".join(f"{k}={v:.1f}" for k, v in sc.items()))
        return 0
    rows = bench_bits_change([100_000, 1_000_000, 10_000_000], reps)
    targets = {"100k": 30, "1M": 60, "10M": 300}
    print("bits change -> repainted histogram + grid + numbers + table row")
    print(f"{'layer':>6} {'median ms':>10} {'target':>7} {'max GUI stall ms':>17}  where")
    for name, med, stall, where in rows:
        print(f"{name:>6} {med:10.1f} {targets[name]:7d} {stall:17.1f}  {where}")
    stall, secs, n = bench_eval_stall("sample:digits_mobilenet")
    print(
        f"\nuniform sweep (6 evaluations, {n} points, {secs:.2f} s): longest GUI-thread "
        f"stall {stall:.1f} ms (target <= 50)"
    )
    sc = bench_table_scale()
    print(
        f"\nlayer table, synthetic {sc['layers']:.0f}-layer model (53 blocks): filled and "
        f"painted in {sc['fill_ms']:.0f} ms (blocks collapsed), expand all + paint "
        f"{sc['expand_ms']:.0f} ms"
    )
    print(
        f"SQNR of {sc['values']:.0f} layers in the worker: {sc['sqnr_s']:.2f} s, "
        f"{sc['batches']:.0f} repaint batches, longest GUI-thread stall "
        f"{sc['sqnr_stall_ms']:.1f} ms (target <= 50); per arriving value "
        f"{sc['per_value_us']:.0f} us on the GUI thread, one flush of all rows + paint "
        f"{sc['flush_ms']:.1f} ms"
    )
    floor, first, loaded = bench_startup(3 if args.quick else 5)
    print(
        f"\nstart-up to first painted window: {first:.2f} s vs floor (torch + pyqtgraph + "
        f"empty plot) {floor:.2f} s = {first / floor:.2f}x (target <= 1.5x); "
        f"model loaded and drawn at {loaded:.2f} s"
    )
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
