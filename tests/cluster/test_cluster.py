"""Sweeps and sensitivity as Ray tasks, on a real local Ray started here (one per module).

Skipped without Ray (``pip install "quantviz[cluster]"``); ``-m "not cluster"`` skips them.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402

from quantviz.cli import main  # noqa: E402
from quantviz.core import LayerConfig, ModelConfig  # noqa: E402
from quantviz.core.defaults import DEFAULT_WEIGHT  # noqa: E402
from quantviz.data import EvalData, load_data, load_model_for_data  # noqa: E402
from quantviz.eval import EvalResult, PointDone, compute_baseline, run  # noqa: E402
from quantviz.eval.cluster import Cluster, ClusterError  # noqa: E402
from quantviz.eval.points import PointFailed, PointRetried, TasksStatus  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MODEL = "sample:digits_mobilenet"


@pytest.fixture(scope="module")
def model():
    handle = load_model_for_data(MODEL, None)
    return handle, load_data(None, handle)


def _big(data: EvalData, times: int) -> EvalData:
    """``data`` repeated: each evaluation takes long enough to act while it runs."""
    return EvalData(
        f"digits x{times}", data.x.repeat(times, 1, 1, 1), data.y.repeat(times), data.calib_x
    )


def _without_times(doc):
    """The document without wall-clock fields (they differ from run to run)."""
    if isinstance(doc, dict):
        return {k: _without_times(v) for k, v in doc.items() if k not in ("seconds", "timings")}
    if isinstance(doc, list):
        return [_without_times(v) for v in doc]
    return doc


def _cli(capsys, *argv):
    code = main([*argv, "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_sweep_and_sensitivity_documents_equal_in_process(local_ray, capsys):
    for cmd, extra in (("sweep", ["--bits", "2,4,8"]), ("sensitivity", ["--bits", "3,4"])):
        here = _cli(capsys, cmd, "--model", MODEL, *extra)
        there = _cli(capsys, cmd, "--model", MODEL, *extra, "--cluster", "local")
        assert _without_times(there) == _without_times(here)
    assert len(here["layers"]) == 8 and "errors" not in there
    # the cluster the test started is still there: --cluster local used it, left it running
    assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2


def test_invalid_config_is_an_error_point_while_the_others_finish(local_ray, model):
    handle, data = model
    base = run(compute_baseline(handle, data))
    good = ModelConfig(default=LayerConfig(weight=DEFAULT_WEIGHT.with_(bits=4)))
    bad = ModelConfig(overrides=(("no.such.layer", LayerConfig(weight=DEFAULT_WEIGHT)),))
    events = []
    with Cluster("local") as cluster:
        outcomes = run(
            cluster.run(
                handle, data, [("a", good), ("bad", bad), ("b", good)], baseline=base, stats={}
            ),
            events.append,
        )
    assert isinstance(outcomes[0], EvalResult) and isinstance(outcomes[2], EvalResult)
    assert isinstance(outcomes[1], PointFailed) and "no.such.layer" in outcomes[1].error
    assert outcomes[0].value == outcomes[2].value
    assert [e.index for e in events if isinstance(e, PointFailed)] == [1]
    assert sorted(e.index for e in events if isinstance(e, PointDone)) == [0, 2]
    assert events[-1] == TasksStatus(0, 0, 3, 3)


def _cpus_free(expected: float, within: float = 20.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if ray.available_resources().get("CPU", 0.0) >= expected:
            return True
        time.sleep(0.2)
    return False


def _slow_points(n: int):
    return [
        (f"W{b}", ModelConfig(default=LayerConfig(weight=DEFAULT_WEIGHT.with_(bits=b))))
        for b in range(2, 2 + n)
    ]


def test_cancel_mid_sweep_leaves_no_running_task(local_ray, model):
    handle, data = model
    big = _big(data, 40)
    base = run(compute_baseline(handle, big))
    cluster = Cluster("local").connect()
    gen = cluster.run(handle, big, _slow_points(8), baseline=base, stats={})
    done = []
    for ev in gen:
        if isinstance(ev, PointDone):
            done.append(ev)
            break
    gen.close()  # what Cancel / Ctrl-C do
    assert len(done) == 1
    assert _cpus_free(2.0), ray.available_resources()
    # and the cluster is still usable
    again = run(
        cluster.run(
            handle, data, _slow_points(2), baseline=run(compute_baseline(handle, data)), stats={}
        )
    )
    assert all(isinstance(o, EvalResult) for o in again)
    cluster.close()


def test_killed_worker_is_retried_and_every_point_comes_back(local_ray, model):
    handle, data = model
    big = _big(data, 40)
    base = run(compute_baseline(handle, big))
    points = _slow_points(6)
    events = []
    killed = []
    cluster = Cluster("local", max_retries=3).connect()
    gen = cluster.run(handle, big, points, baseline=base, stats={})
    for ev in gen:
        events.append(ev)
        if isinstance(ev, PointDone) and not killed:
            # the worker that computed this point now runs the next one: kill it
            pid = cluster.worker_pids[ev.index]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    cluster.close()
    outcomes = [ev.result for ev in events if isinstance(ev, PointDone)]
    assert sorted(ev.index for ev in events if isinstance(ev, PointDone)) == list(range(6))
    assert not [ev for ev in events if isinstance(ev, PointFailed)]
    assert [ev.attempts for ev in events if isinstance(ev, PointRetried)] == [2]
    # every point as this process computes it
    from quantviz.eval import evaluate

    by_name = {r.name: r for r in outcomes}
    for name, cfg in points:
        mine = run(evaluate(handle, big, cfg, baseline=base, name=name))
        assert by_name[name].value == mine.value
        assert by_name[name].kl == pytest.approx(mine.kl, rel=1e-6)


def test_unreachable_address_fails_before_any_work():
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"cannot reach 127\.0\.0\.1:9"):
        Cluster("ray://127.0.0.1:9", timeout=2.0).connect()
    assert time.monotonic() - started < 10
    with pytest.raises(ClusterError, match="local, auto or ray://HOST:PORT"):
        Cluster("http://x:1")
    assert torch.get_num_threads() >= 1


def test_static_activations_calibrate_once_and_match_in_process(local_ray, model):
    from quantviz.core import QuantSpec
    from quantviz.eval import Progress, uniform_sweep
    from quantviz.eval.stats_cache import STATS_CACHE

    handle, data = model
    act = QuantSpec(bits=8, symmetric=False)
    STATS_CACHE.clear()
    here = run(uniform_sweep(handle, data, (4, 8), activation=act))
    STATS_CACHE.clear()
    runs = []
    with Cluster("local") as cluster:
        for _ in range(2):
            events = []
            res = run(
                uniform_sweep(handle, data, (4, 8), activation=act, executor=cluster), events.append
            )
            runs.append((res, [e for e in events if isinstance(e, Progress)]))
    (first, first_ev), (second, second_ev) = runs
    assert any(e.stage == "calibrate" for e in first_ev)
    assert not any(e.stage == "calibrate" for e in second_ev)  # cached
    for res in (first, second):
        assert _without_times(res.to_dict()) == _without_times(here.to_dict())


@pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")
def test_torchscript_and_exported_models_travel_to_the_workers(local_ray, tmp_path):
    from quantviz.eval import uniform_sweep
    from quantviz.model import load_model
    from quantviz.model.samples import build_sample

    info, module = build_sample("digits_cnn")
    module.eval()
    x = torch.zeros(info.input_shape)
    torch.jit.save(torch.jit.script(module), tmp_path / "m.ts")
    torch.export.save(torch.export.export(module, (x,)), tmp_path / "m.pt2")
    with Cluster("local") as cluster:
        for name in ("m.ts", "m.pt2"):
            handle = load_model(str(tmp_path / name), input_shape=tuple(info.input_shape))
            data = load_data("sample:digits", handle)
            here = run(uniform_sweep(handle, data, (3, 8)))
            there = run(uniform_sweep(handle, data, (3, 8), executor=cluster))
            assert not there.errors, there.errors
            assert _without_times(there.to_dict()) == _without_times(here.to_dict()), name
