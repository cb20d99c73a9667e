"""Transforms (fold_bn, cle, bias_correction, smoothquant, hadamard) and AdaRound / GPTQ.

Function preservation is checked against the model's own float outputs, computed before
anything is transformed: ``max |y' - y| / max |y| <= 1e-5`` (float32 models; the transforms
compute in float64 and store float32, so the error is a few float32 roundings per layer).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from models import efficientnet_lite_small, handle_of
from torch import nn

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval import evaluate, run
from quantviz.eval.transforms import model_graph, prepare_transforms, transformed
from quantviz.eval.transforms.rounding import adaround_layer, elementwise_grid, gptq_layer

REL_TOL = 1e-5


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.state_dict().items()}


def _same(module: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(snap[n], t) for n, t in module.state_dict().items())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


class ActNet(nn.Module):
    """conv -> LeakyReLU -> depthwise conv -> PReLU -> conv -> ReLU6 -> conv -> maxpool,
    flatten -> linear -> identity -> linear (a pair without a nonlinearity for hadamard)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.a1 = nn.LeakyReLU(0.1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.a2 = nn.PReLU(8)
        self.c2 = nn.Conv2d(8, 16, 1)
        self.a3 = nn.ReLU6()
        self.c3 = nn.Conv2d(16, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.mid = nn.Identity()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a3(self.c2(self.a2(self.dw(self.a1(self.c1(x))))))
        x = self.pool(self.c3(x))
        return self.fc2(self.mid(self.fc1(torch.flatten(x, 1))))


def _act_net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    m = ActNet().eval()
    with torch.no_grad():  # very different channel ranges, as BN-folded nets have
        m.dw.weight.mul_(torch.logspace(-2, 1, 8).reshape(8, 1, 1, 1))
        m.c1.weight.mul_(torch.logspace(1, -1, 8).reshape(8, 1, 1, 1))
    return m, torch.randn(64, 3, 8, 8)


def _llama(tie: bool = False) -> tuple[nn.Module, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    m = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms with weights other than 1 (folded by hadamard)
        for n, p in m.named_parameters():
            if "norm" in n and not (tie and n == "model.norm.weight"):
                p.copy_(1 + 0.5 * torch.rand_like(p))
            if n.endswith("up_proj.weight"):  # an outlier input channel for smoothquant
                p[:, 3] *= 20
    return m, torch.randint(0, 128, (8, 16))


def _out(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = m(x)
    return y.logits if hasattr(y, "logits") else y


def _check_preserved(m: nn.Module, x: torch.Tensor, transforms: list, tol=REL_TOL) -> object:
    h = handle_of(m, x[:1])
    snap = _snapshot(m)
    y0 = _out(m, x)
    state = run(prepare_transforms(h, ModelConfig(transforms=transforms), x))
    assert state is not None and not state.empty
    with transformed(h, state):
        y1 = _out(m, x)
    assert _rel(y1, y0) <= tol, transforms
    assert _same(m, snap)  # the float model is bit-identical afterwards
    assert torch.equal(_out(m, x), y0)
    return state


def test_cle_preserves_the_function_and_skips_relu6_pairs():
    m, x = _act_net()
    state = _check_preserved(m, x, ["cle"])
    notes = state.notes
    assert any("equalized with dw" in n for n in notes["c1"])
    assert any("equalized with c2" in n for n in notes["dw"])  # depthwise, then PReLU
    assert any("skipped (ReLU6" in n for n in notes["c2"])
    # the equalized depthwise ranges are closer together than before
    r0 = m.dw.weight.detach().abs().reshape(8, -1).amax(1)
    r1 = state.params["dw.weight"].abs().reshape(8, -1).amax(1)
    assert float(r1.max() / r1.min()) < float(r0.max() / r0.min()) / 10


def test_cle_on_the_digits_mobilenet_reaches_the_flattened_linear():
    from quantviz.model import load_model

    h = load_model("sample:digits_mobilenet")
    g = model_graph(h)
    assert [(c.first, c.second) for c in g.chains][-1] == ("pw3", "fc")
    x = torch.randn(32, 1, 8, 8)
    _check_preserved(h.module, x, ["cle"])


def test_fold_bn_preserves_the_function_and_notes_the_folded_layers():
    # float32: a conv -> BatchNorm -> ReLU -> conv -> BatchNorm net, 1e-5 relative
    torch.manual_seed(0)
    small = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
        nn.BatchNorm2d(4),
    ).eval()
    with torch.no_grad():
        for bn in (small[1], small[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.1, 4)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    _check_preserved(small, torch.randn(16, 3, 8, 8), ["fold_bn", "cle"])
    # EfficientNet-Lite (49 BatchNorms, ReLU6, residuals) in float64: its float32 outputs
    # move by 2e-3 when the weights move by 1e-7 (ill-conditioned), so compare in float64
    m = efficientnet_lite_small().double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    state = _check_preserved(m, x, ["fold_bn"], tol=1e-10)
    assert any("BatchNorm" in n and "folded" in n for n in state.notes["conv_stem.0"])
    assert "conv_stem.1" in state.identity
    # fold_bn then cle: pairs through the folded BatchNorms are equalized (not the ReLU6 ones)
    _check_preserved(m, x, ["fold_bn", "cle"], tol=1e-10)


def test_smoothquant_and_hadamard_preserve_a_llama():
    m, x = _llama()
    for tr in (["smoothquant"], ["hadamard"], ["hadamard", {"smoothquant": {"alpha": 0.8}}]):
        _check_preserved(m, x, tr)
    tied, xt = _llama(tie=True)
    _check_preserved(tied, xt, ["hadamard"])
    _check_preserved(tied, xt, ["smoothquant"])


def test_smoothquant_shrinks_the_outlier_channel_and_hadamard_rejects_a_bad_order():
    m, x = _llama()
    h = handle_of(m, x[:1])
    state = run(prepare_transforms(h, ModelConfig(transforms=["smoothquant"]), x))
    up = "model.layers.0.mlp.up_proj.weight"
    # the outlier input column got divided into the norm: its weight range shrank relative
    assert float(state.params[up][:, 3].abs().max()) != float(m.state_dict()[up][:, 3].abs().max())
    with pytest.raises(ValueError, match="put hadamard before smoothquant"):
        run(prepare_transforms(h, ModelConfig(transforms=["smoothquant", "hadamard"]), x))


def test_hadamard_rotates_a_linear_pair_and_names_what_it_cannot_rotate():
    m, x = _act_net()
    state = _check_preserved(m, x, ["hadamard"])
    assert "fc1" in state.notes and "fc2" in state.notes
    from quantviz.model import load_model

    h = load_model("sample:digits_cnn")
    with pytest.raises(ValueError, match="hadamard: nothing to rotate"):
        run(prepare_transforms(h, ModelConfig(transforms=["hadamard"]), torch.randn(4, 1, 8, 8)))


def test_bias_correction_removes_the_mean_shift():
    from quantviz.data import load_data
    from quantviz.model import load_model

    h = load_model("sample:digits_mobilenet")
    data = load_data(None, h)
    w4 = LayerConfig(weight=QuantSpec(bits=4, granularity="per_channel"))
    cfg = ModelConfig(default=w4, transforms=["bias_correction"])
    state = run(prepare_transforms(h, cfg, data.calib_x))
    # measured independently: the mean output of pw3 under quantized weights (plain torch)
    # now equals the float mean, to a small fraction of the shift that was removed
    from quantviz.core import quantize

    x = data.calib_x[:1024].float()
    means = {}

    def grab(name):
        def hook(_m, _a, out):
            means[name] = out.transpose(0, 1).reshape(out.shape[1], -1).mean(1)

        return hook

    mods = dict(h.module.named_modules())
    rm = mods["pw3"].register_forward_hook(grab("pw3"))
    with torch.no_grad():
        h.module(x)
        ref = means["pw3"].clone()
        old = {n: mods[n].weight.data for n in ("stem", "dw1", "pw1", "dw2", "pw2", "dw3", "pw3")}
        for n, t in old.items():
            mods[n].weight.data = quantize(t, w4.weight).dequantized
        shifted = mods["pw3"].bias.data
        h.module(x)
        before = (means["pw3"] - ref).abs().max()
        mods["pw3"].bias.data = state.params["pw3.bias"]
        for n in ("stem", "dw1", "pw1", "dw2", "pw2", "dw3"):
            mods[n].bias.data = state.params[f"{n}.bias"]
        h.module(x)
        after = (means["pw3"] - ref).abs().max()
        mods["pw3"].bias.data = shifted
        for n, t in old.items():
            mods[n].weight.data = t
    rm.remove()
    assert float(after) < 0.05 * float(before)


# -- rounding --------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    bits=st.integers(2, 6),
    gran=st.sampled_from(["per_tensor", "per_channel"]),
    sym=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_adaround_result_is_always_floor_or_ceil(bits, gran, sym, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 12, generator=g) * torch.rand(6, 1, generator=g) * 3
    x = torch.randn(1, 200, 12, generator=g)
    spec = QuantSpec(bits=bits, granularity=gran, symmetric=sym, rounding="adaround")
    grid = elementwise_grid(w, spec)
    gen = adaround_layer(w[None].double(), x, grid.reshape(1, 6, 12), iterations=60)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            q = stop.value[0]
            break
    qmin, qmax = spec.qrange
    scale = grid.s.to(torch.float32)
    inv = torch.reciprocal(scale)
    code = torch.round(q.float() * inv + grid.z.float())
    lo = torch.clamp(torch.floor(w * inv) + grid.z.float(), qmin, qmax)
    hi = torch.clamp(torch.ceil(w * inv) + grid.z.float(), qmin, qmax)
    assert torch.all((code == lo) | (code == hi))
    assert torch.allclose(q.float(), (code - grid.z.float()) * scale)


def _reference_gptq(w, hmat, scale, qmin, qmax, damping):
    """The column-by-column OBQ loop with GPTQ's fixed order: quantize column j, spread its
    error over the remaining columns with the inverse Hessian, then remove j from the
    inverse (Gaussian elimination), as written in the OBQ / GPTQ papers (Eq. 2-3)."""
    w = w.clone().double()
    k = w.shape[1]
    hm = hmat.clone().double()
    hm += damping * hm.diag().mean() * torch.eye(k, dtype=torch.float64)
    hinv = torch.linalg.inv(hm)
    q = torch.zeros_like(w)
    for j in range(k):
        qj = torch.clamp(torch.round(w[:, j] * (1.0 / scale)), qmin, qmax) * scale
        q[:, j] = qj
        err = (w[:, j] - qj) / hinv[j, j]
        w[:, j + 1 :] -= err[:, None] * hinv[j, j + 1 :][None, :]
        hinv = hinv - hinv[:, j : j + 1] @ hinv[j : j + 1, :] / hinv[j, j]
    return q


@pytest.mark.parametrize("block", [1, 4, 32])
def test_gptq_equals_the_reference_loop(block):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 24, generator=g)
    x = torch.randn(300, 24, generator=g) @ torch.randn(24, 24, generator=g)  # correlated
    hmat = (x.T @ x).double()
    spec = QuantSpec(bits=3, granularity="per_tensor", rounding="gptq")
    grid = elementwise_grid(w, spec)
    got = gptq_layer(w, hmat, grid, block_size=block, damping=0.01, anchors=False)
    scale = float(grid.s[0, 0])
    want = _reference_gptq(w, hmat, torch.tensor(scale, dtype=torch.float64), -4, 3, 0.01)
    assert torch.allclose(got, want, atol=1e-9)
    # and it beats nearest rounding on the layer objective
    near = grid.nearest(w.double())
    obj = lambda q: float(((w.double() - q) @ hmat @ (w.double() - q).T).trace())  # noqa: E731
    assert obj(got) < obj(near)


def test_gptq_on_a_llama_beats_nearest_on_every_layer():
    m, x = _llama()
    h = handle_of(m, x[:1])
    spec = QuantSpec(bits=3, granularity="per_channel", rounding="gptq", gptq_act_order=True)
    cfg = ModelConfig(
        default=LayerConfig(weight=spec), overrides=(("model.embed_tokens", LayerConfig(None)),)
    )
    snap = _snapshot(m)
    state = run(prepare_transforms(h, cfg, x))
    assert _same(m, snap)
    info = state.rounding_info
    assert len(info) == 15
    for fqn, r in info.items():
        assert r["objective"] < r["rtn_objective"], fqn


@pytest.mark.parametrize(
    "transforms, spec",
    [
        (["cle"], QuantSpec(bits=4)),
        (["cle", "bias_correction"], QuantSpec(bits=4)),
        (["smoothquant"], QuantSpec(bits=4)),
        ([], QuantSpec(bits=4, rounding="gptq")),
        ([], QuantSpec(bits=4, rounding="adaround", adaround_iters=50)),
    ],
)
def test_every_method_stops_at_any_step_leaving_the_model_bit_identical(transforms, spec):
    from quantviz.data import load_data
    from quantviz.model import load_model

    h = load_model("sample:digits_mobilenet")
    data = load_data(None, h)
    cfg = ModelConfig(default=LayerConfig(weight=spec), transforms=transforms)
    snap = _snapshot(h.module)
    steps = sum(1 for _ in prepare_transforms(h, cfg, data.calib_x[:64]))
    assert steps > 1 and _same(h.module, snap)
    for stop in sorted({1, steps // 2, steps - 1}):
        gen = prepare_transforms(h, cfg, data.calib_x[:64])
        for _ in range(stop):
            next(gen)
        gen.close()
        assert _same(h.module, snap)


def test_evaluate_with_transforms_restores_the_model_and_lifts_w4_per_tensor():
    from quantviz.data import load_data
    from quantviz.model import load_model

    h = load_model("sample:digits_mobilenet")
    data = load_data(None, h)
    snap = _snapshot(h.module)
    w4 = LayerConfig(weight=QuantSpec(bits=4))
    plain = run(evaluate(h, data, ModelConfig(default=w4)))
    fixed = run(evaluate(h, data, ModelConfig(default=w4, transforms=["cle", "bias_correction"])))
    assert _same(h.module, snap)
    assert plain.value < 0.3 and fixed.value >= 0.9
    assert any("cle" in n for n in fixed.layers[0]["notes"])
    assert math.isfinite(fixed.layers[0]["weight_sqnr_db"])
