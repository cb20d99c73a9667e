"""A causal LM in the app: evaluating it plots perplexity (lower is better) on a log axis."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("transformers")


def _lm_files(tmp_path):
    from lm_models import random_tokens, tiny_llama
    from safetensors.torch import save_file

    model = tiny_llama()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "lm.safetensors")
    np.savez(tmp_path / "tokens.npz", input_ids=random_tokens(4, 16).numpy())
    return f"{tmp_path / 'lm.safetensors'}::lm_models:tiny_llama", str(tmp_path / "tokens.npz")


def test_perplexity_axis_label_float_line_and_front(window, qtbot, tmp_path):
    win = window
    src, data = _lm_files(tmp_path)
    with qtbot.waitSignal(win.modelLoaded, timeout=60_000):
        win.open_model(src, data)
    assert win.session.handle.is_causal_lm
    tp = win.tradeoff
    # two points: the default W8 (F5) and a 2-bit sweep point
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.evaluate()
    win.sweepBitsEdit.setText("2")
    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.sweepAction.trigger()
    qtbot.waitUntil(lambda: tp.point_count() == 2)
    pi = tp.plot.getPlotItem()
    left = pi.getAxis("left")
    assert "perplexity" in left.labelText and "lower is better" in left.labelText
    assert "perplexity" in pi.titleLabel.text
    assert tp.log_y and left.logMode
    results = [e.result for e in tp.entries]
    assert all(r.metric == "perplexity" and not r.higher_is_better for r in results)
    # the float line sits at log10 of the float perplexity, the points at log10 of theirs
    base = results[0].baseline
    assert tp.baseline.isVisible() and tp.baseline.value() == pytest.approx(math.log10(base))
    ys = sorted(float(y) for y in tp.scatter.data["y"])
    assert ys == pytest.approx(sorted(math.log10(r.value) for r in results))
    # the Pareto front keeps the lowest perplexity for the size, not the highest
    w8 = next(r for r in results if r.model_bytes == max(q.model_bytes for q in results))
    w2 = next(r for r in results if r is not w8)
    front_y = [float(y) for y in tp.front.yData]
    if w8.value < w2.value:
        assert len(front_y) == 2
    else:
        assert front_y == pytest.approx([math.log10(w2.value)])
    # the tooltip says how much worse, counted upward
    from quantviz.gui.tradeoff_plot import describe_entry

    tip = describe_entry(tp.entries[0])
    assert "lower is better" in tip and "perplexity" in tip


@pytest.mark.slow
def test_open_tiny_lm_from_the_menu_and_evaluate(window, qtbot):
    """File > Open sample > tiny_lm, F5: one perplexity point above the float line."""
    win = window
    acts = {a.data(): a for a in win.samplesMenu.actions()}
    with qtbot.waitSignal(win.modelLoaded, timeout=300_000):
        acts["sample:tiny_lm"].trigger()
    h = win.session.handle
    assert h.is_causal_lm and "lm_head" in h.fqns and len(h.fqns) == 30
    # the table groups the 4 decoder blocks (7 linears each) between embed_tokens and lm_head
    model = win.table.model
    assert model.grouped and model.rowCount() == 6
    assert [len(g.members) for g in model.groups] == [7, 7, 7, 7]
    # before any result the plot already says what F5 will measure
    pi = win.tradeoff.plot.getPlotItem()
    assert pi.titleLabel.text.startswith("Perplexity vs memory")
    assert "perplexity" in pi.getAxis("left").labelText
    with qtbot.waitSignal(win.jobDone, timeout=300_000):
        win.evaluate()
    tp = win.tradeoff
    qtbot.waitUntil(lambda: tp.point_count() == 1)
    r = tp.entries[0].result
    assert r.metric == "perplexity" and r.n_tokens == 64 * 127
    assert "perplexity" in tp.plot.getPlotItem().getAxis("left").labelText
    assert tp.baseline.value() == pytest.approx(math.log10(r.baseline))
