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
