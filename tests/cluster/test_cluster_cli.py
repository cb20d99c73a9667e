"""``--cluster`` errors that need no running Ray (fast; not marked ``cluster``)."""

from __future__ import annotations

import sys

import pytest

from quantviz.cli import main


def test_without_ray_cluster_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["sweep", "--model", "sample:digits_cnn", "--cluster", "local"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "quantviz: error: --cluster: Ray is not installed; install it with: "
        'pip install "quantviz[cluster]"'
    )
    from quantviz.eval.cluster import Cluster, ClusterError

    with pytest.raises(ClusterError, match=r"pip install \"quantviz\[cluster\]\""):
        Cluster("local").connect()


@pytest.mark.parametrize("addr", ["remote", "ray://host", "ray://:10001", "http://h:1"])
def test_bad_cluster_address_is_a_usage_error(addr, capsys):
    code = main(["sensitivity", "--model", "sample:digits_cnn", "--cluster", addr])
    err = capsys.readouterr().err
    assert code == 2
    assert "--cluster" in err and "expected local, auto or ray://HOST:PORT" in err


def test_progress_says_what_the_cluster_does():
    """The lines the CLI prints (off a terminal) for tasks on a cluster."""
    import io

    from quantviz.cli.progress import ProgressReporter
    from quantviz.eval.points import PointFailed, PointRetried, TasksStatus

    out = io.StringIO()
    rep = ProgressReporter("sweep", stream=out, tty=False, interval=0.0)
    rep(TasksStatus(2, 4, 0, 6))
    rep(PointRetried(3, 6, "uniform W4 sym ch", 2))
    rep(PointFailed(1, 6, "uniform W2 sym ch", "m: quantize: bad spec", 1))
    rep(TasksStatus(2, 3, 1, 6))
    lines = out.getvalue().splitlines()
    assert lines == [
        "quantviz: sweep: 6 tasks submitted (2 running, 4 waiting, 0/6 finished)",
        "quantviz: sweep: uniform W4 sym ch: its worker died; recomputed (attempt 2)",
        "quantviz: sweep: 1/6 failed (uniform W2 sym ch): m: quantize: bad spec",
        "quantviz: sweep: 2 running, 3 waiting, 1/6 finished",
    ]
