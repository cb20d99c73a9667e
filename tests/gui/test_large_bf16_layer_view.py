"""A bf16 layer too large for the GUI thread: the histogram view computes it in its worker
and shows numpy's histogram of the weights and an SQNR computed here from scratch."""

import math

import numpy as np
import pytest
import torch
from torch import nn


def _bf16_handle(w: torch.Tensor):
    from quantviz.model.handle import LayerInfo, ModelHandle

    mod = nn.Module()
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight.copy_(w)
    mod.add_module("embed", lin)
    info = LayerInfo("embed", "linear", tuple(w.shape), w.numel(), class_name="Linear")
    return ModelHandle("test", "test", mod, [info], torch.zeros(1, w.shape[1]))


def _sqnr_int4_g128(w: torch.Tensor) -> float:
    """Symmetric int4, groups of 128, min/max scale (torch.ao's formula), in float64."""
    g = w.double().reshape(-1, 128)
    amax = torch.maximum(-g.amin(1).clamp(max=0), g.amax(1).clamp(min=0))
    scale = torch.clamp((amax / 7.5).float(), min=torch.finfo(torch.float32).eps).double()
    inv = (1.0 / scale.float()).double()[:, None]  # 1.0f / scale, as the kernel
    q = torch.clamp(torch.round((g.float() * inv.float()).double()), -8, 7) * scale[:, None]
    dq = q.float().to(torch.bfloat16).double().reshape(-1)
    a = w.double().reshape(-1)
    return 10 * math.log10(float((a * a).sum()) / float(((a - dq) ** 2).sum()))


def test_large_bf16_layer_in_the_worker(qtbot, monkeypatch):
    from PySide6.QtCore import Qt

    from quantviz.app import AppController
    from quantviz.core.spec import QuantSpec
    from quantviz.gui import histogram_view
    from quantviz.gui.histogram_view import HistogramView
    from quantviz.session import Session

    monkeypatch.setattr(histogram_view, "INLINE_LIMIT", 100_000)
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(1024, 256, generator=g) * 0.02).to(torch.bfloat16)
    s = Session()
    ctl = AppController(s)
    s.set_model(_bf16_handle(w))
    hv = HistogramView(ctl)
    qtbot.addWidget(hv)
    hv.show()
    computing = []
    hv.computing.connect(computing.append)
    w4 = QuantSpec(bits=4, granularity="per_group", group_size=128)
    s.set_layer_spec(["embed"], "weight", w4.with_(bits=8))
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        s.select(["embed"])
    assert computing[0] is True  # in the worker
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        s.set_layer_spec(["embed"], "weight", w4)
    assert hv.level_count() == 16
    d = hv.data
    assert d.channel == 0  # group 0's values and grid
    assert np.array_equal(d.counts, np.histogram(w[0, :128].double().numpy(), d.edges)[0])
    sq = _sqnr_int4_g128(w)
    assert f"SQNR {sq:.1f} dB" in hv.statsLabel.text()
    assert d.main.sqnr_db == pytest.approx(sq, abs=1e-3)
    # "all": the whole layer's histogram, streamed in the worker
    with qtbot.waitSignal(hv.updated, timeout=30_000):
        qtbot.keyClick(hv.channelSpin, Qt.Key.Key_Down)
    d = hv.data
    assert d.channel == -1 and d.counts.sum() == w.numel()
    assert np.array_equal(d.counts, np.histogram(w.double().numpy().ravel(), d.edges)[0])
    x, _ = hv.hist_item.getData()
    assert np.array_equal(np.asarray(x), d.edges)  # what is drawn
    assert hv.runner.shutdown(10)
