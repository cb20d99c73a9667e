"""CLI progress: per stage with counts and ETA, monotone, plain lines off a terminal."""

from __future__ import annotations

import io
import json
import re

from quantviz.cli import main
from quantviz.cli.progress import ProgressReporter, drive
from quantviz.eval.results import EvalResult, PointDone, Progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _result(name: str) -> EvalResult:
    return EvalResult("accuracy", 0.9, 0.95, 1.0, 4.0, 4.0, 1, 4, [], 1.0, {}, name=name)


def test_plain_lines_off_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    rep = ProgressReporter("eval", stream=stream, tty=False, interval=10.0, clock=clock)
    for i in range(1, 101):  # 100 baseline batches, 1 s each
        clock.t += 1.0
        rep(Progress(i, 100, "baseline"))
    for i in range(1, 5):
        clock.t += 0.1
        rep(Progress(i, 4, "quantize"))
    for i in range(1, 101):
        clock.t += 1.0
        rep(Progress(i, 100, "forward"))
    rep.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert all(line.startswith("quantviz: eval ") for line in lines)
    # one line per finished stage, a line at most every 10 s while a stage runs
    assert [ln for ln in lines if "done in" in ln] == [
        "quantviz: eval baseline: 100/100 done in 1m40s",
        "quantviz: eval quantize: 4/4 done in 0.4 s",
        "quantviz: eval forward: 100/100 done in 1m40s",
    ]
    running = [ln for ln in lines if "left" in ln]
    assert 15 <= len(running) <= 20
    first = running[0]
    assert first == "quantviz: eval baseline: 10/100 (10%), 10.0 s elapsed, about 1m30s left"
    # counts within a stage only grow
    for stage in ("baseline", "forward"):
        counts = [
            int(m.group(1)) for ln in lines if (m := re.search(rf"eval {stage}: (\d+)/100", ln))
        ]
        assert counts == sorted(counts) and counts[-1] == 100


def test_sweep_lines_count_points_with_eta():
    stream, clock = io.StringIO(), FakeClock()
    rep = ProgressReporter("sweep", stream=stream, tty=False, clock=clock)
    clock.t = 50.0
    rep(Progress(1, 1, "baseline"))  # shared baseline, not part of the points' ETA
    for p in range(3):
        clock.t += 1
        rep(Progress(1, 2, "forward", p, 3))
        clock.t += 1
        rep(Progress(2, 2, "forward", p, 3))
        rep(PointDone(_result(f"W{p}"), p, 3))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "quantviz: sweep baseline: 1/1 done in 50.0 s",
        "quantviz: sweep: 1/3 done (W0), about 4.0 s left",
        "quantviz: sweep: 2/3 done (W1), about 2.0 s left",
        "quantviz: sweep: 3/3 done (W2)",
    ]


def test_a_stage_count_never_goes_back():
    stream = io.StringIO()
    rep = ProgressReporter("eval", stream=stream, tty=False, interval=0.0, clock=FakeClock())
    for done in (1, 3, 2, 4):
        rep(Progress(done, 5, "forward"))
    counts = [int(m.group(1)) for m in re.finditer(r"forward: (\d)/5", stream.getvalue())]
    assert counts == [1, 3, 3, 4]


def test_terminal_bars_per_stage_with_counts():
    stream = io.StringIO()
    rep = ProgressReporter("eval", stream=stream, tty=True, bar_interval=0)
    for i in range(1, 4):
        rep(Progress(i, 3, "baseline"))
    for i in range(1, 3):
        rep(Progress(i, 2, "forward"))
    rep.close()
    text = stream.getvalue()
    assert "eval baseline: 3/3" in text and "eval forward: 2/2" in text and "<" in text


def test_disabled_prints_nothing_and_drive_returns_the_value():
    stream = io.StringIO()
    rep = ProgressReporter("eval", stream=stream, enabled=False)

    def gen():
        yield Progress(1, 1, "baseline")
        return 42

    assert drive(gen(), rep) == 42 and stream.getvalue() == ""


def test_cli_progress_on_a_pipe_is_plain_lines(capsys):
    assert main(["eval", "-m", "sample:digits_cnn", "--json", "--batch-size", "100"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert "\r" not in err
    lines = err.splitlines()
    assert lines == [
        "quantviz: eval baseline: 4/4 done in " + lines[0].rsplit(" in ", 1)[1],
        "quantviz: eval quantize: 4/4 done in " + lines[1].rsplit(" in ", 1)[1],
        "quantviz: eval forward: 4/4 done in " + lines[2].rsplit(" in ", 1)[1],
    ]
