"""ONNX files as models: layers from the graph, fake-quantized weights and QDQ activations in
onnxruntime, QDQ files read back into a configuration, bad files refused.

Every ONNX file is exported in the test with ``torch.onnx.export`` (the TorchScript-based
exporter, constant folding on: BatchNorm folded into the convs as a deployed file has it)
from the bundled samples and a ResNet-18 built in ``tests/models.py``. The reference outputs
are computed here, independently of quantviz: the initializers are fake-quantized with
``torch.ao`` observers and ``torch.fake_quantize_per_channel_affine``, written into a copy of
the file with ``onnx``, and run in onnxruntime.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from models import resnet18  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from quantviz.core import LayerConfig, ModelConfig, QuantSpec  # noqa: E402
from quantviz.eval import apply_config, check_config  # noqa: E402
from quantviz.model import ModelLoadError, capture_stats, load_model  # noqa: E402


# -----------------------------------------------------------------------------------------
# helpers (independent of quantviz)
# -----------------------------------------------------------------------------------------
def export(module: torch.nn.Module, example: torch.Tensor, path) -> None:
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


def run_ort(model, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def weight_inits(model) -> dict[str, tuple[str, str, int]]:
    """initializer -> (node name, op type, per-channel axis), read from the graph here."""
    out = {}
    inits = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1:
            w = node.input[1]
            if w not in inits:
                continue
            if node.op_type == "Conv":
                axis = 0
            elif node.op_type == "ConvTranspose":
                axis = 1
            elif node.op_type == "Gemm":
                trans = [a.i for a in node.attribute if a.name == "transB"]
                axis = 0 if trans and trans[0] else 1
            else:
                axis = 1
            out[w] = (node.name, node.op_type, axis)
    return out


def fq_per_channel(w: torch.Tensor, axis: int, bits: int) -> torch.Tensor:
    obs = torch.ao.quantization.PerChannelMinMaxObserver(
        ch_axis=axis,
        qscheme=torch.per_channel_symmetric,
        quant_min=-(2 ** (bits - 1)),
        quant_max=2 ** (bits - 1) - 1,
        dtype=torch.qint8,
    )
    obs(w)
    s, z = obs.calculate_qparams()
    return torch.fake_quantize_per_channel_affine(
        w, s, z.to(torch.int32), axis, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    )


def fq_per_group(w: torch.Tensor, axis: int, bits: int, group: int) -> torch.Tensor:
    """Groups of ``group`` consecutive inputs of each output channel (``axis``)."""
    moved = w.movedim(axis, 0)  # [out, ...inputs]
    rows = moved.reshape(moved.shape[0], -1)
    g = rows.reshape(-1, group)
    q = fq_per_channel(g, 0, bits)
    return q.reshape(moved.shape).movedim(0, axis)


def group_for(row_len: int, want: int = 32) -> int:
    return max(d for d in range(1, want + 1) if row_len % d == 0)


def reference(path, fake_quant) -> tuple:
    """The file with every weight initializer replaced by ``fake_quant(w, axis)``."""
    model = onnx.load(str(path))
    uses = weight_inits(model)
    new = []
    for t in model.graph.initializer:
        if t.name in uses:
            w = torch.from_numpy(numpy_helper.to_array(t).copy())
            t = numpy_helper.from_array(fake_quant(w, uses[t.name][2]).numpy(), t.name)
        new.append(t)
    del model.graph.initializer[:]
    model.graph.initializer.extend(new)
    return model, uses


# -----------------------------------------------------------------------------------------
# the models
# -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ("digits_cnn", "digits_mobilenet"):
        h = load_model(f"sample:{name}")
        export(h.module, h.example_input, d / f"{name}.onnx")
        out[name] = (d / f"{name}.onnx", h)
    net = resnet18(width=16, num_classes=10)
    ex = torch.zeros(1, 3, 32, 32)
    from models import handle_of

    export(net, ex, d / "resnet18.onnx")
    out["resnet18"] = (d / "resnet18.onnx", handle_of(net, ex, "resnet18"))
    return out


MODELS = ["digits_cnn", "digits_mobilenet", "resnet18"]


def _x(h, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *h.example_input.shape[1:]), generator=g)


@pytest.mark.parametrize("name", MODELS)
def test_layers_are_the_weight_initializers(files, name):
    path, torch_handle = files[name]
    h = load_model(str(path))
    assert h.flavour == "onnx"
    model = onnx.load(str(path))
    uses = weight_inits(model)
    # one layer per weight initializer, named like the torch layer it was exported from
    assert len(h.layers) == len(uses) == len(torch_handle.layers)
    # (in graph order: ResNet's downsample runs before the block's convs)
    assert sorted(h.fqns) == sorted(torch_handle.fqns)
    for lay in h.layers:
        tl = torch_handle.layer(lay.fqn)
        assert lay.kind == tl.kind
        assert lay.weight_shape == tl.weight_shape  # torch's layout: out channels first
        assert lay.depthwise == tl.depthwise
        assert lay.channel_axis == 0
        assert lay.macs == tl.macs
        info = h.meta["onnx"]["layers"][lay.fqn]
        assert info["initializer"] in uses
        node, op, axis = uses[info["initializer"]]
        assert (info["node"], info["op"], info["axis"]) == (node, op, axis)
        assert info["file_shape"] == tuple(
            next(t.dims for t in model.graph.initializer if t.name == info["initializer"])
        )
    # the float model is the file: same outputs as onnxruntime on the file itself
    x = _x(h)
    want = run_ort(model, x.numpy())
    np.testing.assert_allclose(h.module(x).numpy(), want, rtol=1e-5, atol=1e-5)
    # and (BatchNorm folded) close to the torch model it was exported from
    torch.testing.assert_close(h.module(x), torch_handle.module(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_w8_per_channel_equals_independent_fake_quant(files, name):
    path, _ = files[name]
    h = load_model(str(path))
    config = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"), activation=None)
    )
    ref, _ = reference(path, lambda w, axis: fq_per_channel(w, axis, 8))
    x = _x(h)
    with apply_config(h, config):
        got = h.module(x)
    want = run_ort(ref, x.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    # the model is float again afterwards
    np.testing.assert_allclose(
        h.module(x).numpy(), run_ort(onnx.load(str(path)), x.numpy()), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", MODELS)
def test_w4_per_group_equals_independent_fake_quant(files, name):
    path, _ = files[name]
    h = load_model(str(path))
    overrides = []
    for lay in h.layers:
        row = math.prod(lay.weight_shape[1:])
        spec = QuantSpec(bits=4, granularity="per_group", group_size=group_for(row))
        overrides.append((lay.fqn, LayerConfig(weight=spec, activation=None)))
    config = ModelConfig(default=LayerConfig(activation=None), overrides=tuple(overrides))

    def fq(w, axis):
        row = w.numel() // w.shape[axis]
        return fq_per_group(w, axis, 4, group_for(row))

    ref, _ = reference(path, fq)
    x = _x(h)
    with apply_config(h, config):
        got = h.module(x)
    np.testing.assert_allclose(got.numpy(), run_ort(ref, x.numpy()), rtol=1e-5, atol=1e-5)


def test_matmul_and_gemm_without_transb_layouts(tmp_path):
    """A MatMul weight [in, out] and a Gemm with transB=0: per-channel is per output
    column (the file's axis 1), groups run along the inputs."""
    g = np.random.default_rng(0)
    w1 = g.standard_normal((64, 32)).astype(np.float32)  # MatMul [in, out]
    w2 = g.standard_normal((32, 10)).astype(np.float32)  # Gemm transB=0 [in, out]
    b2 = g.standard_normal(10).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="gemm", transB=0),
        ],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 10])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    h = load_model(str(path))
    assert [(lay.fqn, lay.weight_shape, lay.kind) for lay in h.layers] == [
        ("w1", (32, 64), "linear"),
        ("w2", (10, 32), "linear"),
    ]
    assert [h.meta["onnx"]["layers"][f]["axis"] for f in h.fqns] == [1, 1]
    assert h.layers[0].macs == 64 * 32 and h.layers[1].bias
    x = torch.from_numpy(g.standard_normal((5, 64)).astype(np.float32))
    for spec, fq in (
        (QuantSpec(bits=8, granularity="per_channel"), lambda w, a: fq_per_channel(w, a, 8)),
        (
            QuantSpec(bits=4, granularity="per_group", group_size=16),
            lambda w, a: (
                fq_per_channel(w.T.reshape(-1, 16), 0, 4).reshape(w.shape[1], w.shape[0]).T
            ),  # groups of 16 inputs of each output
        ),
    ):
        config = ModelConfig(default=LayerConfig(weight=spec, activation=None))
        ref, _ = reference(path, fq)
        with apply_config(h, config):
            got = h.module(x)
        np.testing.assert_allclose(got.numpy(), run_ort(ref, x.numpy()), rtol=1e-5, atol=1e-5)


# -----------------------------------------------------------------------------------------
# activations
# -----------------------------------------------------------------------------------------
def test_static_w8a8_equals_independent_qdq_graph(files):
    """Calibration statistics from onnxruntime's intermediate outputs; static uint8
    activations as QuantizeLinear/DequantizeLinear, compared with a graph quantized here
    (torch.ao MinMaxObserver parameters, Q/DQ inserted with onnx.helper)."""
    path, _ = files["digits_cnn"]
    h = load_model(str(path))
    calib = _x(h, 16, seed=1)
    stats = capture_stats(h, [calib[:8], calib[8:]])
    while True:
        try:
            next(stats)
        except StopIteration as stop:
            stats = stop.value
            break
    act = QuantSpec(bits=8, symmetric=False)
    config = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"), activation=act)
    )
    x = _x(h, 4, seed=2)
    with apply_config(h, config, stats=stats):
        got = h.module(x).numpy()

    # the independent reference: observe every weight op's input in onnxruntime ...
    ref, uses = reference(path, lambda w, axis: fq_per_channel(w, axis, 8))
    graph = ref.graph
    users = [n for n in graph.node if len(n.input) > 1 and n.input[1] in uses]
    probe = onnx.ModelProto()
    probe.CopyFrom(onnx.load(str(path)))
    for n in users:
        if n.input[0] != "input":
            probe.graph.output.append(onnx.ValueInfoProto(name=n.input[0]))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    observers = {n.name: torch.ao.quantization.MinMaxObserver(dtype=torch.quint8) for n in users}
    for batch in (calib[:8], calib[8:]):
        vals = dict(zip(names, sess.run(None, {"input": batch.numpy()}), strict=True))
        vals["input"] = batch.numpy()
        for n in users:
            observers[n.name](torch.from_numpy(vals[n.input[0]]))
    # ... and put Q -> DQ on it
    new_nodes = []
    for node in graph.node:
        if node.name in observers:
            s, z = observers[node.name].calculate_qparams()
            base = f"ref_{node.name}"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array(float(s), np.float32), base + "_s"),
                    numpy_helper.from_array(np.array(int(z), np.uint8), base + "_z"),
                ]
            )
            new_nodes += [
                helper.make_node(
                    "QuantizeLinear", [node.input[0], base + "_s", base + "_z"], [base + "_q"]
                ),
                helper.make_node(
                    "DequantizeLinear", [base + "_q", base + "_s", base + "_z"], [base + "_dq"]
                ),
            ]
            node.input[0] = base + "_dq"
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    # (graph optimizations off: with constant weights onnxruntime fuses Q/DQ + Conv into
    # integer kernels, which round differently from the Q/DQ semantics quantviz evaluates)
    want = run_ort(ref, x.numpy(), optimize=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the same config without activations differs: the Q/DQ really ran
    assert not np.allclose(
        got, run_ort(reference(path, lambda w, a: fq_per_channel(w, a, 8))[0], x.numpy()), atol=1e-6
    )


def test_activation_hooks_that_cannot_run_are_refused(files):
    path, _ = files["digits_cnn"]
    h = load_model(str(path))
    dyn = ModelConfig(default=LayerConfig(activation=QuantSpec(bits=8, dynamic=True)))
    with pytest.raises(ValueError, match="dynamic activation quantization cannot run on an ONNX"):
        check_config(h, dyn)
    km = ModelConfig(default=LayerConfig(activation=QuantSpec(bits=4, quantizer="kmeans")))
    with pytest.raises(ValueError, match="kmeans activation quantization cannot run"):
        check_config(h, km)
    remove = h.add_hooks(h.fqns[1], pre=lambda t: t * 2)  # replaces the input: impossible
    with pytest.raises(ValueError, match="cannot run inside onnxruntime"):
        h.module(_x(h))
    remove()
    seen = []
    remove = h.add_hooks(h.fqns[1], pre=seen.append, post=seen.append)
    h.module(_x(h, 2))
    remove()
    assert [tuple(t.shape) for t in seen] == [(2, 16, 8, 8), (2, 32, 8, 8)]  # conv2 in, out


# -----------------------------------------------------------------------------------------
# QDQ files read back
# -----------------------------------------------------------------------------------------
def test_quantviz_qdq_export_round_trips_into_its_config(files, tmp_path):
    from quantviz.io.exporters.onnx_fmt import export_onnx

    h = load_model("sample:digits_cnn")
    w8 = QuantSpec(bits=8, granularity="per_channel")
    w4 = QuantSpec(bits=4, symmetric=False, granularity="per_group", group_size=16)
    config = ModelConfig(
        default=LayerConfig(weight=w8, activation=None),
        overrides=(("conv2", LayerConfig(weight=w4, activation=None)),),
    )
    out = tmp_path / "qdq.onnx"
    export_onnx(h, config, out)
    q = load_model(str(out))
    cfg = q.meta["file_config"]
    assert q.fqns == h.fqns
    assert cfg.resolve("conv1").weight == w8
    assert cfg.resolve("fc1").weight == w8
    assert cfg.resolve("conv2").weight == w4
    assert all(cfg.resolve(f).activation is None for f in q.fqns)
    # the scales are the file's, and the weights are codes x scales computed here
    model = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for f in q.fqns:
        scale = inits[f"{f}.weight_quantviz_scale"]
        np.testing.assert_array_equal(q.meta["onnx"]["qdq"][f]["weight_scale"], scale)
    codes = inits["conv1.weight_quantviz_codes"].astype(np.float32)
    s = inits["conv1.weight_quantviz_scale"].reshape(-1, 1, 1, 1)
    np.testing.assert_array_equal(q.weight("conv1").numpy(), codes * s)
    # as it is (the dequantized weights), it is the file, and what quantviz gave the torch
    # model under that config
    x = _x(h)
    np.testing.assert_allclose(
        q.module(x).numpy(), run_ort(model, x.numpy(), optimize=False), rtol=1e-5, atol=1e-5
    )
    with apply_config(h, config):
        torch.testing.assert_close(q.module(x), h.module(x), rtol=1e-4, atol=1e-5)
    # an ONNX QDQ export of it would quantize twice: refused by name
    with pytest.raises(ValueError, match="re-export of a quantized model"):
        export_onnx(q, cfg, tmp_path / "again.onnx")


def test_onnxruntime_quantize_static_file_reads_back(files, tmp_path):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    path, _ = files["resnet18"]
    calib = [_x(load_model(str(path)), 2, seed=i).numpy() for i in range(3)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    out = tmp_path / "rn_qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(path),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    q = load_model(str(out))
    f = load_model(str(path))
    assert q.fqns == f.fqns
    cfg = q.meta["file_config"]
    model = onnx.load(str(out))
    inits = {t.name: t for t in model.graph.initializer}
    for lay in q.layers:
        lc = cfg.resolve(lay.fqn)
        assert lc.weight.bits == 8 and lc.weight.symmetric
        assert lc.weight.granularity == "per_channel" and lc.weight.axis == 0
        assert lc.activation is not None and lc.activation.bits == 8
        assert not lc.activation.symmetric  # uint8 activations with a zero point
        init = f.meta["onnx"]["layers"][lay.fqn]["initializer"]
        scale = numpy_helper.to_array(inits[f"{init}_scale"])
        np.testing.assert_array_equal(q.meta["onnx"]["qdq"][lay.fqn]["weight_scale"], scale)
        codes = numpy_helper.to_array(inits[f"{init}_quantized"]).astype(np.float32)
        want = codes * scale.reshape(-1, *[1] * (codes.ndim - 1))
        np.testing.assert_array_equal(q.weight(lay.fqn).numpy(), want)
        # the dequantized weight is within half a step of the float one
        diff = np.abs(want - f.weight(lay.fqn).numpy()).reshape(len(scale), -1).max(1)
        assert (diff <= scale * 0.5 + 1e-6).all()
    # activation Q/DQ bypassed: the module is the float graph with the dequantized weights
    x = _x(q)
    assert q.module(x).shape == (3, 10)


# -----------------------------------------------------------------------------------------
# QDQ export of a float ONNX file
# -----------------------------------------------------------------------------------------
def test_qdq_export_of_a_float_onnx_file(files, tmp_path):
    from quantviz.io.exporters.onnx_fmt import export_onnx

    path, _ = files["digits_mobilenet"]
    h = load_model(str(path))
    config = ModelConfig(
        default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel"), activation=None)
    )
    out = tmp_path / "mn_qdq.onnx"
    res = export_onnx(h, config, out)
    assert not res.unsupported
    x = _x(h)
    with apply_config(h, config):
        want = h.module(x).numpy()
    got = run_ort(onnx.load(str(out)), x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    back = load_model(str(out))
    assert back.fqns == h.fqns
    assert back.meta["file_config"].resolve(h.fqns[0]).weight == config.default.weight


# -----------------------------------------------------------------------------------------
# bad input
# -----------------------------------------------------------------------------------------
def test_bad_files_are_refused_by_name(files, tmp_path):
    path, _ = files["digits_cnn"]
    raw = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx: not a valid ONNX model"):
        load_model(str(cut))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"hello, this is not a model")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx: not a model file.*ONNX"):
        load_model(str(junk))

    # external data missing
    model = onnx.load(str(path))
    ext = tmp_path / "ext.onnx"
    onnx.save(model, str(ext), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert load_model(str(ext)).fqns == load_model(str(path)).fqns
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelLoadError, match=r"ext\.onnx: external data 'ext\.data'.* missing"):
        load_model(str(ext))

    # no quantizable initializers
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    relu = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(relu))
    with pytest.raises(ModelLoadError, match=r"relu\.onnx: no quantizable initializers"):
        load_model(str(relu))


def test_data_that_does_not_fit_the_graph_names_both_shapes(files, tmp_path):
    from quantviz.data import load_data

    path, _ = files["digits_cnn"]
    h = load_model(str(path))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 32, 32), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(
        ValueError, match=r"sample shape \(3, 32, 32\) does not match the model input \(1, 8, 8\)"
    ):
        load_data(str(bad), h)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 32, 32\).*'input' is \[batch, 1, 8, 8\]"):
        h.module(torch.zeros(2, 3, 32, 32))


def test_cli_evaluates_a_qdq_file_with_its_own_config(tmp_path, capsys):
    import json

    from quantviz.cli import main
    from quantviz.io.exporters.onnx_fmt import export_onnx

    h = load_model("sample:digits_cnn")
    w4 = QuantSpec(bits=4, symmetric=False, granularity="per_channel")
    out = tmp_path / "w4.onnx"
    export_onnx(h, ModelConfig(default=LayerConfig(weight=w4, activation=None)), out)
    assert main(["eval", "--model", str(out), "--data", "sample:digits", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "the file's QDQ configuration"
    assert {lay["scheme"] for lay in doc["layers"]} == {"W4 asym ch / A float"}


def test_cli_exit_2_on_a_bad_onnx_file(files, tmp_path, capsys):
    from quantviz.cli import main

    path, _ = files["digits_cnn"]
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:200])
    assert main(["eval", "--model", str(cut), "--data", "sample:digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("quantviz: error: ") and "cut.onnx: not a valid ONNX model" in err


def test_where_non_finite_values_appear_in_the_graph(files):
    from quantviz.eval.forward import locate_non_finite

    path, _ = files["digits_cnn"]
    h = load_model(str(path))
    x = _x(h)
    assert locate_non_finite(h, x) is None
    w = h.weight("fc1")
    orig = w.data
    bad = orig.clone()
    bad[3, 5] = float("inf")
    w.data = bad
    try:
        assert locate_non_finite(h, x) == "the output of Gemm node '/fc1/Gemm' (layer fc1)"
    finally:
        w.data = orig


def test_input_shape_from_the_graph_or_the_data(tmp_path):
    from quantviz.data import load_data, load_model_for_data
    from quantviz.eval import evaluate
    from quantviz.model import InputShapeRequired

    net = resnet18(width=8, num_classes=10)
    ex = torch.zeros(1, 3, 16, 16)
    # spatial dimensions symbolic: the data's sample gives the example input
    free = tmp_path / "free.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (ex,),
            str(free),
            dynamo=False,
            input_names=["input"],
            dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}},
        )
    with pytest.raises(InputShapeRequired, match="free.onnx: cannot tell the model's input shape"):
        load_model(str(free))
    data = tmp_path / "d.npz"
    g = np.random.default_rng(0)
    np.savez(data, x=g.standard_normal((6, 3, 24, 24)).astype(np.float32))
    h = load_model_for_data(str(free), str(data))
    assert tuple(h.example_input.shape) == (1, 3, 24, 24)
    assert h.layers[0].macs == 8 * 12 * 12 * 3 * 49  # conv1 at 24x24: 12x12 outputs
    assert tuple(load_model(str(free), input_shape=(1, 3, 32, 32)).example_input.shape) == (
        1,
        3,
        32,
        32,
    )
    # a fixed batch of 1: evaluated one sample at a time
    fixed = tmp_path / "fixed.onnx"
    export_fixed = onnx.load(str(free))
    dims = export_fixed.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 3, 24, 24), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    onnx.save(export_fixed, str(fixed))
    h = load_model(str(fixed))
    assert h.meta["static_batch"] is True
    d = load_data(str(data), h)
    gen = evaluate(h, d, ModelConfig(), batch_size=4)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
            break
    assert result.batch_size == 1 and result.n_samples == 6
    assert result.metric == "top1_agreement" and 0.0 <= result.value <= 1.0


def test_conv_transpose_output_channels_on_axis_1(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, groups=2),
    ).eval()
    ex = torch.zeros(1, 3, 8, 8)
    path = tmp_path / "up.onnx"
    export(net, ex, path)
    h = load_model(str(path))
    assert [(lay.fqn, lay.kind, lay.weight_shape, lay.channel_axis) for lay in h.layers] == [
        ("0", "conv2d", (8, 3, 3, 3), 0),
        ("2", "conv_transpose2d", (8, 3, 4, 4), 1),  # [in, out/groups, k, k] as in torch
    ]
    assert h.meta["onnx"]["layers"]["2"]["axis"] == 1
    from models import handle_of

    th = handle_of(net, ex)  # the torch model's layers say the same
    assert [(lay.kind, lay.weight_shape, lay.channel_axis) for lay in th.layers] == [
        (lay.kind, lay.weight_shape, lay.channel_axis) for lay in h.layers
    ]
    assert h.layers[1].macs == 8 * 8 * 8 * 3 * 16  # input pixels x channels x (out/g) x k
    x = _x(h)
    np.testing.assert_allclose(h.module(x).numpy(), net(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    ch = QuantSpec(bits=8, granularity="per_channel")
    config = ModelConfig(
        default=LayerConfig(weight=ch, activation=None),
        overrides=(("2", LayerConfig(weight=ch.with_(axis=1), activation=None)),),
    )
    ref, _ = reference(path, lambda w, axis: fq_per_channel(w, axis, 8))
    with apply_config(h, config):
        got = h.module(x)
    np.testing.assert_allclose(got.numpy(), run_ort(ref, x.numpy()), rtol=1e-5, atol=1e-5)
