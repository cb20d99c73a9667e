"""ONNX QDQ export of real models of every kind quantviz opens, checked with onnxruntime.

Two models are built here (random init, nothing downloaded): an EfficientNet-Lite-like conv
net (BatchNorm after every conv, depthwise convs, a Linear head; 64x64 input) and a small
transformer (token + position ``nn.Embedding``, ``nn.Linear`` on 3-D activations, which
``torch.onnx.export`` writes as ``Transpose -> MatMul``). Each is saved as a state_dict +
architecture (``nn.Module``), as TorchScript and as a ``torch.export`` ``.pt2``, opened
with :func:`quantviz.model.load_model` and exported.

Every quantized layer must be a ``DequantizeLinear`` on integer codes in the file, and
onnxruntime (graph optimisations off, so it runs the graph as written) must reproduce the
fake-quantized torch model (:func:`quantviz.eval.apply_config`). Tolerances: weights are
dequantized bit-identically, so what differs is float rounding of the float ops (ORT's
BatchNormalization, LayerNormalization, Gelu and reductions vs torch's): measured max |diff|
<= 1.2e-7 on outputs of magnitude 0.2-0.8 (torch 2.13, onnxruntime 1.32); we assert
<= 1e-4 * max|ref| + 1e-5, and that the float model's outputs differ by over 100x that
(the quantization is really in the file). With static activations an input at a rounding
tie can land one code away (ORT's QuantizeLinear divides by the scale, quantviz multiplies
by its reciprocal) and that difference propagates (measured here: 4.5e-8, no tie); we
assert <= 2e-2 * max|ref| and >= 99% top-1 agreement there.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from quantviz.core import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.eval import apply_config, run  # noqa: E402
from quantviz.io.exporters import export  # noqa: E402
from quantviz.io.exporters.onnx_fmt import (  # noqa: E402
    OPSET,
    export_float_onnx,
    match_weights,
    quantize_graph,
)
from quantviz.model import load_model  # noqa: E402
from quantviz.model.capture import capture_stats  # noqa: E402


# ---------------------------------------------------------------------------------------
# the models
# ---------------------------------------------------------------------------------------
class MBConv(nn.Module):
    """EfficientNet-Lite's inverted residual (no squeeze-excite in the Lite variants)."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False) if expand != 1 else None
        self.bn0 = nn.BatchNorm2d(mid) if expand != 1 else None
        self.dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None and self.bn0 is not None:
            y = F.relu6(self.bn0(self.expand_conv(y)))
        y = F.relu6(self.bn1(self.dw(y)))
        y = self.bn2(self.project(y))
        return x + y if self.skip else y


class EffNetLiteLike(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.blocks = nn.Sequential(
            MBConv(16, 16, 1, 1), MBConv(16, 24, 4, 2), MBConv(24, 24, 4, 1), MBConv(24, 32, 4, 2)
        )
        self.head = nn.Conv2d(32, 64, 1, bias=False)
        self.bn_head = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn(self.stem(x)))
        x = self.blocks(x)
        x = F.relu6(self.bn_head(self.head(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_effnet() -> nn.Module:
    torch.manual_seed(0)
    m = EffNetLiteLike()
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():  # trained-looking BatchNorm statistics, so folding would matter
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return m.eval()


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        y = self.ln1(x)
        q = self.q(y).reshape(b, t, h, d // h).transpose(1, 2)
        k = self.k(y).reshape(b, t, h, d // h).transpose(1, 2)
        v = self.v(y).reshape(b, t, h, d // h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 100, d: int = 32, t: int = 8, classes: int = 5):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(t, d)
        self.blocks = nn.Sequential(Block(d, 4), Block(d, 4))
        self.cls = nn.Linear(d, classes)
        self.register_buffer("positions", torch.arange(t), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos(self.positions)
        return self.cls(self.blocks(x).mean(1))


def build_transformer() -> nn.Module:
    torch.manual_seed(0)
    return TinyTransformer().eval()


MODELS = {
    "effnet": (build_effnet, (3, 64, 64), "float32"),
    "transformer": (build_transformer, (8,), "int64"),
}
KINDS = ("nn", "torchscript", "exported")


def _inputs(model: str, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    _, shape, dtype = MODELS[model]
    if dtype == "int64":
        return torch.randint(0, 100, (n, *shape), generator=g)
    return torch.randn((n, *shape), generator=g)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Every model saved in every kind: name -> path (the source load_model takes)."""
    d = tmp_path_factory.mktemp("models")
    sources = {}
    for name, (build, shape, dtype) in MODELS.items():
        m = build()
        x2 = _inputs(name, 2)
        torch.save(m.state_dict(), d / f"{name}.pt")
        (d / f"{name}.pt.json").write_text(
            json.dumps({"input_shape": [1, *shape], "input_dtype": dtype})
        )
        sources[(name, "nn")] = f"{d / f'{name}.pt'}::test_export_onnx_models:{build.__name__}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = torch.jit.trace(m, x2)
            ts.save(str(d / f"{name}_ts.pt"))
            ep = torch.export.export(m, (x2,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            torch.export.save(ep, str(d / f"{name}.pt2"))
        (d / f"{name}_ts.pt.json").write_text(
            json.dumps({"input_shape": [1, *shape], "input_dtype": dtype})
        )
        sources[(name, "torchscript")] = str(d / f"{name}_ts.pt")
        sources[(name, "exported")] = str(d / f"{name}.pt2")
    return sources


def _open(model_dir, name: str, kind: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = load_model(model_dir[(name, kind)])
    assert h.flavour == kind
    return h


def _config(h, name: str, activation: QuantSpec | None = None) -> ModelConfig:
    """W8 per channel, plus a W4 asymmetric per-tensor and a W4 per-group (16) layer."""
    f = h.fqns
    if name == "effnet":
        t4, g4 = "blocks.1.expand_conv", "blocks.2.project"
    else:
        t4, g4 = "blocks.0.v", "blocks.1.ff1"
    assert {t4, g4} <= set(f)
    return ModelConfig(
        default=LayerConfig(
            weight=QuantSpec(bits=8, granularity="per_channel"), activation=activation
        ),
        overrides=(
            (t4, LayerConfig(weight=QuantSpec(bits=4, symmetric=False), activation=activation)),
            (
                g4,
                LayerConfig(
                    weight=QuantSpec(bits=4, granularity="per_group", group_size=16),
                    activation=activation,
                ),
            ),
        ),
    )


def _session(path_or_bytes):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _run(path_or_bytes, x: torch.Tensor) -> np.ndarray:
    """Outputs of the file on ``x``, one sample at a time where its batch is static."""
    sess = _session(path_or_bytes)
    dim = sess.get_inputs()[0].shape[0]
    if isinstance(dim, int):  # a static batch (of 1: the example input's)
        return np.concatenate(
            [sess.run(None, {"input": x[i : i + dim].numpy()})[0] for i in range(0, len(x), dim)]
        )
    return sess.run(None, {"input": x.numpy()})[0]


def _weight_dqs(model) -> list:
    """DequantizeLinear nodes reading an integer initializer (quantized weights)."""
    ints = {
        t.name: t
        for t in model.graph.initializer
        if t.data_type
        in (
            onnx.TensorProto.INT4,
            onnx.TensorProto.UINT4,
            onnx.TensorProto.INT8,
            onnx.TensorProto.UINT8,
            onnx.TensorProto.INT16,
            onnx.TensorProto.UINT16,
        )
    }
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in ints]


def _float_copies(model, h) -> list[str]:
    """Layers whose float weight (in any layout) is still an initializer of the file."""
    out = []
    arrays = [
        numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2
    ]
    for f in h.fqns:
        w = h.weight(f).detach().numpy()
        for a in arrays:
            if (a.shape == w.shape and np.array_equal(a, w)) or (
                a.ndim == 2 and a.T.shape == w.shape and np.array_equal(a.T, w)
            ):
                out.append(f)
                break
    return out


def _reference(h, cfg, x, stats=None) -> np.ndarray:
    with torch.no_grad(), apply_config(h, cfg, stats=stats):
        return h.module(x).numpy()


# ---------------------------------------------------------------------------------------
# every layer quantized, for every model kind
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_layer_is_quantized_and_onnxruntime_matches(tmp_path, model_dir, name, kind):
    h = _open(model_dir, name, kind)
    n_layers = len(h.fqns)
    assert n_layers == (14 if name == "effnet" else 15)
    cfg = _config(h, name)
    out = tmp_path / "q.onnx"
    res = export(h, cfg, "onnx", out, strict=True)  # strict: no layer may be left float
    assert res.unsupported == []
    assert res.details["qdq_weights"] == n_layers
    assert res.details["weight_code_types"] == {"int8": n_layers - 2, "int4": 1, "uint4": 1}
    # the tracer freezes the batch size an exported program computes symbolically
    frozen = kind == "exported" and name == "transformer"
    assert res.details["batch"] == (1 if frozen else "dynamic")
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == OPSET
    ops = [n.op_type for n in model.graph.node]
    assert len(_weight_dqs(model)) == n_layers == ops.count("DequantizeLinear")
    assert "QuantizeLinear" not in ops  # weights are stored as codes, not quantized at run time
    assert _float_copies(model, h) == []
    if name == "effnet":  # quantviz runs BatchNorm in float after the quantized conv
        assert ops.count("BatchNormalization") == 13
    else:
        assert ops.count("Gather") >= 2 and ops.count("MatMul") >= 12

    x = _inputs(name, 16, seed=5)
    ref = _reference(h, cfg, x)
    y = _run(out, x)
    diff = float(np.abs(y - ref).max())
    assert diff <= 1e-4 * float(np.abs(ref).max()) + 1e-5, diff
    # and the quantization is visible: the float model gives other outputs
    with torch.no_grad():
        flt = h.module(x).numpy()
    assert float(np.abs(flt - ref).max()) > 100 * diff


@pytest.mark.parametrize("kind", ["nn", "exported"])
def test_static_activations_on_a_batchnorm_convnet(tmp_path, model_dir, kind):
    h = _open(model_dir, "effnet", kind)
    cfg = _config(h, "effnet", activation=QuantSpec(bits=8, symmetric=False))
    calib = [_inputs("effnet", 16, seed=s) for s in range(4)]
    stats = run(capture_stats(h, calib))
    out = tmp_path / "a.onnx"
    res = export(h, cfg, "onnx", out, stats=stats, strict=True)
    assert res.details["qdq_activations"] == len(h.fqns)
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == len(h.fqns)
    assert ops.count("DequantizeLinear") == 2 * len(h.fqns)
    x = _inputs("effnet", 64, seed=9)
    ref = _reference(h, cfg, x, stats)
    y = _run(out, x)
    diff = float(np.abs(y - ref).max())
    assert diff <= 2e-2 * float(np.abs(ref).max()), diff
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.99


# ---------------------------------------------------------------------------------------
# the matcher on graphs whose weights are transposed or folded
# ---------------------------------------------------------------------------------------
def _folded_export(h) -> object:
    """torch.onnx.export's default (constant folding): BN folded, transposes folded."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            h.module,
            (h.example_input,),
            buf,
            dynamo=False,
            opset_version=20,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return onnx.version_converter.convert_version(onnx.load_from_string(buf.getvalue()), OPSET)


def test_transposed_initializers_are_matched_and_written_in_their_layout(model_dir):
    h = _open(model_dir, "transformer", "nn")
    model = _folded_export(h)
    found, missing = match_weights(h, model)
    # constant folding turned pos(positions) into a constant: that table is gone
    assert list(missing) == ["pos"]
    perms = {f: {u.perm for u in uses} for f, uses in found.items()}
    linears = [f for f in h.fqns if h.layer(f).kind == "linear" and f != "cls"]
    assert all(perms[f] == {(1, 0)} for f in linears)  # MatMul on a [in, out] initializer
    assert perms["cls"] == {(0, 1)} and perms["tok"] == {(0, 1)}  # Gemm transB=1, Gather

    per_in = QuantSpec(bits=8, granularity="per_channel", axis=1)  # a scale per input column
    cfg = ModelConfig(
        default=_config(h, "transformer").default,
        overrides=(
            *_config(h, "transformer").overrides,
            ("pos", LayerConfig(weight=None)),
            ("blocks.1.ff2", LayerConfig(weight=per_in)),
        ),
    )
    unsupported, details = quantize_graph(h, cfg, model, strict=True)
    assert unsupported == [] and details["qdq_weights"] == len(h.fqns) - 1
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    inits = {t.name: t for t in model.graph.initializer}
    ff2 = found["blocks.1.ff2"][0].init  # [in, out] = [128, 32]: torch's axis 1 is its axis 0
    assert list(inits[dq[ff2].input[0]].dims) == [128, 32]
    assert [a.i for a in dq[ff2].attribute if a.name == "axis"] == [0]
    ff1 = found["blocks.1.ff1"][0].init  # per group of 16 along torch's rows -> along axis 0
    attrs = {a.name: a.i for a in dq[ff1].attribute}
    assert attrs == {"axis": 0, "block_size": 16}
    assert list(inits[dq[ff1].input[1]].dims) == [2, 128]
    x = _inputs("transformer", 16, seed=3)
    ref = _reference(h, cfg, x)
    y = _run(model.SerializeToString(), x)
    assert float(np.abs(y - ref).max()) <= 1e-4 * float(np.abs(ref).max()) + 1e-5


def test_weights_folded_with_batchnorm_are_reported_not_silently_kept(model_dir):
    """The EfficientNet bug: a BN-folded conv weight is no weight quantviz quantized."""
    h = _open(model_dir, "effnet", "torchscript")
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel")))
    with pytest.raises(ValueError, match=r"13 layer\(s\) cannot be expressed: stem: its weight"):
        quantize_graph(h, cfg, _folded_export(h), strict=True)
    unsupported, details = quantize_graph(h, cfg, _folded_export(h))
    assert [f for f, _ in unsupported] == [f for f in h.fqns if f != "fc"]
    assert all("not found in the ONNX graph" in why for _, why in unsupported)
    assert details["qdq_weights"] == 1  # fc, whose weight is not folded


def test_float_export_keeps_the_weights_quantviz_quantizes(model_dir):
    h = _open(model_dir, "effnet", "exported")
    model = export_float_onnx(h)
    found, missing = match_weights(h, model)
    assert missing == {} and set(found) == set(h.fqns)
    assert all(len(u) == 1 for u in found.values())


def test_strict_names_a_non_uniform_weight(tmp_path, model_dir):
    h = _open(model_dir, "transformer", "torchscript")
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8)),
        overrides=(("tok", LayerConfig(weight=QuantSpec(bits=4, quantizer="kmeans"))),),
    )
    res = export(h, cfg, "onnx", tmp_path / "k.onnx")
    assert [f for f, _ in res.unsupported] == ["tok"]
    assert "dequantized float constant" in res.unsupported[0][1]
    with pytest.raises(ValueError, match="tok: weight 4 kmeans t: DequantizeLinear"):
        export(h, cfg, "onnx", tmp_path / "s.onnx", strict=True)
    assert not (tmp_path / "s.onnx").exists()
    x = _inputs("transformer", 8, seed=4)
    y = _run(tmp_path / "k.onnx", x)
    ref = _reference(h, cfg, x)
    assert float(np.abs(y - ref).max()) <= 1e-4 * float(np.abs(ref).max()) + 1e-5


# ---------------------------------------------------------------------------------------
# file size: codes, not floats
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "bits", "max_ratio"),
    [
        ("sample:digits_cnn", 8, 0.30),  # measured 0.272
        ("sample:digits_cnn", 4, 0.17),  # measured 0.149
        ("sample:digits_mobilenet", 8, 0.47),  # measured 0.438 (biases, names, graph)
        ("sample:digits_mobilenet", 4, 0.35),  # measured 0.323
    ],
)
def test_qdq_file_holds_integer_codes(tmp_path, source, bits, max_ratio):
    h = load_model(source)
    flt = tmp_path / "f.onnx"
    onnx.save(export_float_onnx(h), str(flt))
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=bits, granularity="per_channel")))
    out = tmp_path / "q.onnx"
    export(h, cfg, "onnx", out)
    size, fsize = out.stat().st_size, flt.stat().st_size
    # what the codes save: 4 bytes -> bits/8 per weight, less a float scale and an integer
    # zero point per channel, plus the DequantizeLinear node and its initializers' names
    # (measured ~300 bytes per layer; allowed 400)
    n_w = sum(lay.weight_numel for lay in h.layers)
    n_ch = sum(lay.weight_shape[0] for lay in h.layers)
    expected = fsize - n_w * (4 - bits / 8) + n_ch * (4 + bits / 8) + 400 * len(h.layers)
    assert size <= expected, (size, expected)
    assert size / fsize <= max_ratio
    x = torch.randn(32, *h.example_input.shape[1:], generator=torch.Generator().manual_seed(0))
    ref = _reference(h, cfg, x)
    y = _run(out, x)
    assert float(np.abs(y - ref).max()) <= 1e-4 * float(np.abs(ref).max()) + 1e-5


@pytest.mark.parametrize("kind", ["nn", "torchscript"])
def test_fp8_weights_are_float8_initializers(tmp_path, model_dir, kind):
    h = _open(model_dir, "effnet", kind)
    f = h.fqns
    cfg = ModelConfig(
        default=LayerConfig(weight=QuantSpec(quantizer="fp8_e4m3", granularity="per_channel")),
        overrides=(
            (f[0], LayerConfig(weight=QuantSpec(quantizer="fp8_e5m2"))),
            (
                f[5],
                LayerConfig(
                    weight=QuantSpec(quantizer="fp8_e4m3", granularity="per_group", group_size=16)
                ),
            ),
            (f[-1], LayerConfig(weight=QuantSpec(quantizer="nf4", granularity="per_channel"))),
        ),
    )
    out = tmp_path / "fp8.onnx"
    res = export(h, cfg, "onnx", out)
    assert [fqn for fqn, _ in res.unsupported] == [f[-1]]  # NF4 has no ONNX type
    assert res.details["weight_code_types"] == {"float8e4m3fn": len(f) - 2, "float8e5m2": 1}
    model = onnx.load(str(out))
    f8 = {onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2}
    inits = {t.name: t for t in model.graph.initializer}
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == len(f) - 1 and all(inits[n.input[0]].data_type in f8 for n in dqs)
    # the stored values are the float8 numbers torch's own cast gives for weight * (1 / scale)
    dq = next(n for n in dqs if n.output[0] == f"{f[1]}.weight")
    w = h.weight(f[1]).detach()
    s = numpy_helper.to_array(inits[dq.input[1]])
    stored = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    inv = torch.reciprocal(torch.tensor(s))[:, None, None, None]
    cast = (w * inv).to(torch.float8_e4m3fn).float()
    assert np.array_equal(stored, cast.numpy())
    x = _inputs("effnet", 16, seed=2)
    ref = _reference(h, cfg, x)
    y = _run(out, x)
    assert float(np.abs(y - ref).max()) <= 1e-4 * float(np.abs(ref).max()) + 1e-5


@pytest.mark.parametrize("signed", [True, False])
def test_int4_codes_are_packed_as_onnx_reads_them(signed):
    from quantviz.io.exporters.onnx_fmt import _int_tensor
    from quantviz.model.onnx_graph import int_type as _int_type

    onnx_t, np_t, (lo, hi) = _int_type(3, signed)
    assert onnx_t == (onnx.TensorProto.INT4 if signed else onnx.TensorProto.UINT4)
    codes = np.arange(21).reshape(3, 7) % (hi - lo + 1) + lo  # an odd count: a padded nibble
    t = _int_tensor("c", codes, onnx_t, np_t)
    assert len(t.raw_data) == 11
    assert np.array_equal(numpy_helper.to_array(t).astype(np.int64), codes)


def test_cli_exports_a_torchscript_batchnorm_convnet_with_every_layer_quantized(
    tmp_path, model_dir
):
    """The reported session: ``quantviz export`` on a TorchScript EfficientNet-like net."""
    import subprocess
    import sys

    from quantviz.io import save_config

    cfg = tmp_path / "w8.json"
    save_config(
        ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"))), cfg
    )
    out = tmp_path / "effnet_qdq.onnx"
    cmd = [
        sys.executable,
        "-m",
        "quantviz",
        "export",
        "--model",
        model_dir[("effnet", "torchscript")],
    ]
    proc = subprocess.run(
        [*cmd, "--config", str(cfg), "--format", "onnx", "-o", str(out), "--strict", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["unsupported"] == [] and doc["qdq_weights"] == 14
    assert doc["weight_code_types"] == {"int8": 14}
    assert len(_weight_dqs(onnx.load(str(out)))) == 14


def test_initializers_kept_as_graph_inputs(model_dir):
    h = _open(model_dir, "effnet", "nn")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            h.module,
            (h.example_input,),
            buf,
            dynamo=False,
            opset_version=20,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=False,
            keep_initializers_as_inputs=True,
        )
    model = onnx.version_converter.convert_version(onnx.load_from_string(buf.getvalue()), OPSET)
    assert len(model.graph.input) > 1
    cfg = ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8)))
    quantize_graph(h, cfg, model, strict=True)
    names = {i.name for i in model.graph.input}
    assert not any(f"{f}.weight" in names for f in h.fqns)
    x = _inputs("effnet", 1, seed=1)
    y = _run(model.SerializeToString(), x)
    assert float(np.abs(y - _reference(h, cfg, x)).max()) <= 1e-5
