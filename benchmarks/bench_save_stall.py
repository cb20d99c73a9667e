"""How long the GUI thread stalls while a session with fine-tuned weights is saved.

A session holding one fine-tuned configuration of ``--params`` float32 parameters (GPT-2
small sized by default: 124M, ~500 MB). A 5 ms ``QTimer`` ticks on the GUI thread; the
longest gap between two ticks is the longest the window could not repaint or take input.

- ``blocking``: ``save_session`` called on the GUI thread (how Save worked before).
- ``st.save in a worker``: ``safetensors.torch.save`` of the same tensors in a worker
  thread (the previous writer moved off the GUI thread as it was: it holds the GIL).
- ``save job``: what Save does now, ``save_session_steps`` in a :class:`Runner` (the
  weights hashed and written chunk by chunk, GIL released).

Prints seconds (median of ``--repeat``) and the ratios of the stalls.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_save_stall.py [--params 124000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _stall(app, start: Callable[[Callable[[], None]], None]) -> tuple[float, float]:
    """(longest gap between GUI ticks, total seconds) while ``start(done)`` works."""
    from PySide6.QtCore import QEventLoop, QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]
    ended = threading.Event()
    loop = QEventLoop()

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
        if ended.is_set():
            loop.quit()

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    timer.start()
    QTimer.singleShot(0, lambda: start(ended.set))
    loop.exec()
    timer.stop()
    total = time.perf_counter() - t0
    return max(gaps), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, default=124_000_000)
    ap.add_argument("--tensors", type=int, default=148)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    from PySide6.QtWidgets import QApplication
    from safetensors.torch import save

    from quantviz.core.spec import LayerConfig, ModelConfig, QuantSpec
    from quantviz.gui.workers import Runner
    from quantviz.io.session_file import SessionData, save_session, save_session_steps

    app = QApplication.instance() or QApplication([])
    per = a.params // a.tensors
    g = torch.Generator().manual_seed(0)
    weights = {f"h.{i}.weight": torch.randn(per, generator=g) for i in range(a.tensors)}
    w2 = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=2, granularity="per_channel")))
    data = SessionData(
        model="sample:digits_cnn",
        data="sample:digits",
        configs={"default": ModelConfig(), "w2": w2, "w2 qat-ste": w2},
        current="w2 qat-ste",
        tuned={"w2 qat-ste": weights},
    )
    mb = sum(t.numel() * 4 for t in weights.values()) / 1e6
    res: dict[str, list[tuple[float, float]]] = {"blocking": [], "st": [], "job": []}
    runner = Runner("bench")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.quantviz"

        def blocking(done: Callable[[], None]) -> None:
            save_session(path, data)
            done()

        def st_worker(done: Callable[[], None]) -> None:
            def work() -> None:
                save(weights)
                done()

            threading.Thread(target=work).start()

        def job(done: Callable[[], None]) -> None:
            runner.finished.connect(lambda *_: done())
            runner.start("save", lambda: save_session_steps(path, data))

        for _ in range(a.repeat):
            res["blocking"].append(_stall(app, blocking))
            res["st"].append(_stall(app, st_worker))
            res["job"].append(_stall(app, job))
            runner.finished.disconnect()
    m = {
        k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        for k, v in res.items()
    }
    print(f"fine-tuned weights: {a.params:,} parameters in {a.tensors} tensors ({mb:.0f} MB)")
    for k, label in (
        ("blocking", "blocking save (before)"),
        ("st", "st.save in a worker"),
        ("job", "save job (now)"),
    ):
        print(f"{label:24s} longest GUI stall {m[k][0]:.3f} s   save took {m[k][1]:.2f} s")
    print(
        f"stall ratio blocking / job {m['blocking'][0] / m['job'][0]:.0f}x; "
        f"st.save in a worker / job {m['st'][0] / m['job'][0]:.0f}x"
    )


if __name__ == "__main__":
    main()
