"""Error propagation on a model where the answer is known, against plain torch."""

from __future__ import annotations

import json
import math

import pytest
import torch
from models import handle_of
from torch import nn

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.data.datasets import EvalData
from quantviz.eval import run
from quantviz.eval.debug import debug
from quantviz.io.model_explorer import node_data, node_ids, write_node_data

W4T = QuantSpec(bits=4)  # uniform symmetric per-tensor min/max: codes -8..7


def fragile_mlp(seed: int = 0) -> nn.Sequential:
    """fc2's row 0 scaled 100x (and fc3's column 0 by 1/100: the float function is the
    same, ReLU being positively homogeneous): per-tensor W4 rounds fc2's other rows away."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    with torch.no_grad():
        m[2].weight[0] *= 100
        m[2].bias[0] *= 100
        m[4].weight[:, 0] /= 100
    return m.eval()


def data_of(n: int = 96, seed: int = 1, labels: bool = False) -> EvalData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g) if labels else None
    return EvalData("random", x, y, x[:32])


def fq(w: torch.Tensor) -> torch.Tensor:
    """Plain torch per-tensor symmetric 4-bit fake quantization (scale = amax / 7.5)."""
    scale = float(w.detach().abs().max()) / 7.5
    return torch.fake_quantize_per_tensor_affine(w, scale, 0, -8, 7)


def ref_errors(model: nn.Sequential, x: torch.Tensor):
    """Isolated and cumulative (mse, sqnr_db) per Linear, computed layer by layer."""
    lin = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    iso, cum = [], []
    hf = hq = x
    for m in model:
        if isinstance(m, nn.Linear):
            f = m(hf)
            alone = nn.functional.linear(hf, fq(m.weight), m.bias)
            q = nn.functional.linear(hq, fq(m.weight), m.bias)
            for out, acc in ((alone, iso), (q, cum)):
                e = ((out.double() - f.double()) ** 2).sum()
                sqnr = 10 * math.log10(float((f.double() ** 2).sum() / e))
                acc.append((float(e / f.numel()), sqnr))
            hf, hq = f, q
        else:
            hf, hq = m(hf), m(hq)
    return [str(i) for i in lin], iso, cum, hf, hq


@pytest.fixture(scope="module")
def setup():
    m = fragile_mlp()
    h = handle_of(m, torch.zeros(1, 16))
    d = data_of()
    cfg = ModelConfig(default=LayerConfig(weight=W4T))
    res = run(debug(h, d, cfg, batch_size=40))  # 3 batches, the last one short
    return m, h, d, res


def test_fragile_layer_is_found(setup):
    _m, _h, _d, res = setup
    assert [lay.fqn for lay in res.layers] == ["0", "2", "4", "6"]  # execution order
    worst = min(res.layers, key=lambda lay: lay.isolated.sqnr_db)
    assert worst.fqn == "2"
    lay2 = res.layer("2")
    assert lay2.jump and lay2.flagged and lay2.jump_db > 3.0
    assert not res.layer("0").flagged  # the first layer has nothing to jump from
    assert res.flagged[0] == "2"


def test_numbers_match_plain_torch(setup):
    m, _h, d, res = setup
    with torch.no_grad():
        names, iso, cum, f_out, q_out = ref_errors(m, d.x)
    for name, (mse_i, sq_i), (mse_c, sq_c) in zip(names, iso, cum, strict=True):
        lay = res.layer(name)
        assert lay.isolated.mse == pytest.approx(mse_i, rel=1e-4)
        assert lay.isolated.sqnr_db == pytest.approx(sq_i, abs=1e-3)
        assert lay.cumulative.mse == pytest.approx(mse_c, rel=1e-4)
        assert lay.cumulative.sqnr_db == pytest.approx(sq_c, abs=1e-3)
    # the first layer sees the float input: its isolated and cumulative errors agree
    assert res.layer("0").isolated.mse == pytest.approx(res.layer("0").cumulative.mse)
    # cosine: mean per-sample cosine of the last layer's output
    cos = nn.functional.cosine_similarity(q_out.double(), f_out.double(), dim=1).mean()
    assert res.layer("6").cumulative.cosine == pytest.approx(float(cos), abs=1e-9)
    # KL over the last dimension, as scipy would compute it
    from scipy.special import rel_entr, softmax

    p, q = softmax(f_out.double().numpy(), axis=-1), softmax(q_out.double().numpy(), axis=-1)
    assert res.output.kl == pytest.approx(float(rel_entr(p, q).sum(axis=-1).mean()), rel=1e-6)


def test_last_layer_cumulative_is_the_output_error(setup):
    _m, _h, _d, res = setup
    last = res.layers[-1]
    assert last.cumulative.mse == pytest.approx(res.output.mse, rel=1e-12)
    assert last.cumulative.sqnr_db == pytest.approx(res.output.sqnr_db, abs=1e-9)
    assert last.cumulative.cosine == pytest.approx(res.output.cosine, abs=1e-12)
    # and the output error is what a plain evaluation of the whole quantized model measures
    from quantviz.eval import evaluate

    _m, h, d, _ = setup
    r = run(evaluate(h, d, ModelConfig(default=LayerConfig(weight=W4T))))
    assert r.kl == pytest.approx(res.output.kl, rel=1e-6)
    assert r.cosine == pytest.approx(res.output.cosine, rel=1e-6)
    assert r.top1_agreement == res.output.top1_agreement


def test_model_restored_and_generator_cancels(setup):
    m, h, d, _res = setup
    before = {k: v.clone() for k, v in m.state_dict().items()}
    gen = debug(h, d, ModelConfig(default=LayerConfig(weight=W4T)), batch_size=8)
    next(gen)
    gen.close()  # cancel after the first batch
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


def test_unquantized_layers_and_activation_quantization():
    m = fragile_mlp()
    h = handle_of(m, torch.zeros(1, 16))
    d = data_of(48)
    cfg = ModelConfig(
        default=LayerConfig(weight=None),
        overrides=(("4", LayerConfig(weight=W4T, activation=QuantSpec(bits=8, dynamic=True))),),
    )
    res = run(debug(h, d, cfg))
    assert res.layer("0").isolated.sqnr_db == math.inf and not res.layer("0").quantized
    assert res.layer("0").cumulative.sqnr_db == math.inf  # nothing before it is quantized
    assert res.layer("4").quantized and math.isfinite(res.layer("4").cumulative.sqnr_db)
    # layer 4 is the first quantized one: cumulative == isolated (input quantizer included)
    assert res.layer("4").cumulative.mse == pytest.approx(res.layer("4").isolated.mse, rel=1e-9)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["layers"][0]["isolated"]["sqnr_db"] is None  # inf -> null


def test_model_explorer_node_data(setup, tmp_path):
    _m, h, _d, res = setup
    ids = node_ids(h)
    assert set(ids) == {"0", "2", "4", "6"}
    # torch.export names the linear calls linear, linear_1, ...; Model Explorer's node ids
    ep = torch.export.export(h.module, (h.example_input,))
    names = {n.name for n in ep.graph_module.graph.nodes}
    assert set(ids.values()) <= names
    path = tmp_path / "node_data.json"
    write_node_data(path, res, ids, "isolated_sqnr_db")
    doc = json.loads(path.read_text())
    assert list(doc) == ["graph"]
    g = doc["graph"]
    assert set(g["results"]) == {"0", "2", "4", "6", *ids.values()}
    assert g["results"][ids["2"]]["value"] == pytest.approx(res.layer("2").isolated.sqnr_db)
    stops = [s["stop"] for s in g["gradient"]]
    assert stops[0] == 0 and stops[-1] == 1 and all("bgColor" in s for s in g["gradient"])
    with pytest.raises(ValueError, match="value: must be one of"):
        node_data(res, ids, "nonsense")


def test_static_activation_quantization_uses_calibration():
    m = fragile_mlp()
    h = handle_of(m, torch.zeros(1, 16))
    d = data_of(48)
    a8 = QuantSpec(bits=8, symmetric=False)  # static: ranges from the calibration data
    cfg = ModelConfig(
        default=LayerConfig(weight=None),
        overrides=(("0", LayerConfig(weight=None, activation=a8)),),
    )
    stats: dict = {}
    events = []
    res = run(debug(h, d, cfg, stats=stats), events.append)
    assert "0" in stats and events[0].stage == "calibrate"
    lay = res.layer("0")
    assert lay.quantized and 20 < lay.isolated.sqnr_db < 80
    assert lay.cumulative.mse == pytest.approx(lay.isolated.mse, rel=1e-9)
    # plain torch: per-tensor asymmetric 8-bit fake quant of the input with its min/max
    lo, hi = float(d.calib_x.min()), float(d.calib_x.max())
    scale = (hi - lo) / 255
    zp = round(-128 - lo / scale)
    with torch.no_grad():
        xq = torch.fake_quantize_per_tensor_affine(d.x, scale, zp, -128, 127)
        f, q = m[0](d.x), m[0](xq)
    mse = float(((q.double() - f.double()) ** 2).mean())
    assert lay.isolated.mse == pytest.approx(mse, rel=1e-3)


def test_a_model_without_hooks_is_refused():
    h = handle_of(fragile_mlp(), torch.zeros(1, 16))
    h.flavour = "torchscript"
    with pytest.raises(ValueError, match="error propagation needs layer hooks"):
        run(debug(h, data_of(8), ModelConfig(default=LayerConfig(weight=W4T))))
