"""Render the app's main views offscreen to PNGs in docs/ (light and dark palettes).

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs]

Opens the bundled MobileNet-style sample, picks a pointwise layer at 4 bits with a k-means
comparison grid, evaluates, runs a uniform sweep and a mixed-precision sweep, then grabs the
main window, the histogram and the trade-off plot. Then compares three named configurations
(evaluated) in the compare view.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication

from quantviz.gui.app import create_main_window


def wait(signal, timeout: float = 120.0) -> None:
    from quantviz.gui.workers import wait_for_signal

    wait_for_signal(signal, timeout)


def settle(ms: int = 150) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        QApplication.processEvents()


def run_job(win, start) -> None:
    """Start a job and wait until it is done; a failure raises with its message."""
    failed = []
    win.errors.errorShown.connect(lambda title, msg: failed.append(f"{title}: {msg}"))
    t0 = time.perf_counter()
    start()
    loop = QEventLoop()
    win.jobDone.connect(loop.quit)
    win.jobFailed.connect(loop.quit)
    win.errors.errorShown.connect(loop.quit)
    if not failed:
        loop.exec()
    if failed:
        raise RuntimeError(failed[-1])
    print(f"{win.jobRunner.label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def shoot(out: Path, dark: bool, model: str) -> None:
    suffix = "dark" if dark else "light"
    win = create_main_window(model, dark=dark)
    win.resize(1680, 1000)  # the documented size, whatever screen this renders on
    win.confirm_close = lambda: "discard"
    win.show()
    wait(win.statsReady)
    s = win.session
    fqn = "pw2" if "pw2" in s.fqns else s.fqns[1]
    s.select([fqn])
    win.controls.bitsSpin.setValue(4)
    hv = win.histogram
    hv.compareQuantizerCombo.setCurrentIndex(hv.compareQuantizerCombo.findData("kmeans"))
    run_job(win, win.evaluate)
    run_job(win, win.uniform_sweep)
    win.budgetSpin.setValue(0.0)
    run_job(win, win.mixed_precision)
    s.select([fqn])
    settle()
    win.grab().save(str(out / f"main_window_{suffix}.png"))
    # the whole layer under one per-tensor grid (the default is per channel)
    win.controls.granularityCombo.setCurrentIndex(0)
    settle()
    hv.grab().save(str(out / f"histogram_compare_{suffix}.png"))
    win.undoStack.undo()
    settle()
    win.tradeoff.grab().save(str(out / f"tradeoff_sweep_{suffix}.png"))
    shoot_compare(win, out, suffix, fqn)
    # per-channel view with the channel range plot
    win.controls.granularityCombo.setCurrentIndex(1)
    hv.channelSpin.setValue(3)
    settle()
    hv.grab().save(str(out / f"histogram_per_channel_{suffix}.png"))
    win.histogram.rangePlot.grab().save(str(out / f"channel_ranges_{suffix}.png"))
    win.close()
    win.deleteLater()
    settle()


def shoot_compare(win, out: Path, suffix: str, fqn: str) -> None:
    """Three named configurations, evaluated, side by side in the compare view."""
    from quantviz.core.spec import QuantSpec
    from quantviz.session import set_layer_spec

    s = win.session
    base = s.config
    km = QuantSpec(bits=4, quantizer="kmeans", granularity="per_channel")
    pw = [f for f in s.fqns if f.startswith("pw")][-2:]
    s.add_config("k-means pw", set_layer_spec(base, pw, "weight", km))
    s.add_config(
        "W6 ch", set_layer_spec(base, [fqn], "weight", QuantSpec(bits=6, granularity="per_channel"))
    )
    for name in ("k-means pw", "W6 ch"):
        run_job(win, lambda n=name: win.evaluate_named(n))
    win.show_compare()
    cv = win.compareView
    cv.set_compared([s.current_name, "k-means pw", "W6 ch"])
    cv.select_layer(fqn)
    win.compareDock.resize(1500, 940)
    settle(300)
    cv.grab().save(str(out / f"compare_view_{suffix}.png"))
    win.compareDock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"))
    ap.add_argument("--model", default="sample:digits_mobilenet")
    ap.add_argument("--theme", choices=["light", "dark", "both"], default="both")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    QApplication.instance() or QApplication(sys.argv[:1])
    for dark in {"light": [False], "dark": [True], "both": [False, True]}[args.theme]:
        shoot(out, dark, args.model)
    print("\n".join(sorted(str(p) for p in out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
