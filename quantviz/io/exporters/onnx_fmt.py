"""ONNX export with QuantizeLinear / DequantizeLinear (QDQ), as deployment toolchains read it.

Needs the ``export`` extra. The float model is exported with the TorchScript-based
``torch.onnx.export`` (``dynamo=False``: the dynamo exporter needs ``onnxscript``, which
quantviz does not require) at opset 20, converted to opset 21 (the first with int4 and
``block_size``), from the very module quantviz quantizes — ``nn.Module``, TorchScript or an
unflattened ``torch.export`` program alike — with ``do_constant_folding=False``: constant
folding would fold BatchNorm into the preceding conv's weights (quantviz quantizes the conv
weight and runs BatchNorm in float, so the file keeps the ``BatchNormalization`` node) and
transposes into the initializers.

**Matching weights to the graph.** A layer's weight is found by what it is, not by name:
every float initializer (and ``Constant``) is traced through ``Transpose`` / ``Identity``
nodes to the op consuming it as a weight — ``Conv`` / ``ConvTranspose`` (input 1), ``Gemm``
(input B, ``transB`` honoured), ``MatMul`` (input 1, the ``[in, out]`` layout of a linear
weight) or ``Gather`` (input 0, an embedding table) — and compared with the layer's weight
in torch's layout (shape, then values, transposition included). A quantized layer that
matches nothing is listed in ``ExportResult.unsupported`` (kept float), an error with
``strict=True``.

**What is written.**

* uniform-quantized weights: the integer codes of :func:`quantviz.core.codes.quantize_codes`
  as an ``int4``/``uint4`` (codes of <= 4 bits), ``int8``/``uint8`` (<= 8 bits) or
  ``int16``/``uint16`` initializer feeding ``DequantizeLinear`` directly (no weight
  ``QuantizeLinear``): per tensor (scalar scale), per channel (``axis``), per group
  (``axis``, ``block_size`` on the ``[C, K]`` view, followed by a ``Reshape`` for conv
  kernels). The dequantized weight equals quantviz's fake-quantized weight bit for bit.
  The spec and the true bit width are in the node's ``doc_string``;
* static uniform activation specs put ``[Clip ->] QuantizeLinear -> DequantizeLinear`` on the
  layer's input (before every node using the weight), with the scale / zero point fitted on
  the calibration statistics (``Clip`` when the code range is narrower than the integer
  type's);
* FP8 weights (``fp8_e4m3`` = OCP E4M3FN, ``fp8_e5m2``): the float8 values themselves as a
  ``float8e4m3fn`` / ``float8e5m2`` initializer feeding ``DequantizeLinear`` with the scale
  (per tensor / channel / group as above) — again bit-identical to quantviz's weight;
* other non-uniform weights (k-means, log2, NF4, FP4) are written as their dequantized float
  constants (``DequantizeLinear`` has no codebook; FP4 needs opset 23), and dynamic or
  non-uniform activation specs are left float — both are listed in
  ``ExportResult.unsupported`` by layer name. Embedding inputs are indices: an activation
  spec on them does nothing, in quantviz as in the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.io.atomic import atomic_path
from quantviz.model.onnx_graph import (
    WeightUse,
    constants_to_initializers,
    consumers_of,
    int_type,
    name_nodes,
    qdq_activation,
    weight_uses,
)

if TYPE_CHECKING:
    from quantviz.core.codes import Codes
    from quantviz.io.exporters import ExportResult
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = [
    "OPSET",
    "WeightUse",
    "export_float_onnx",
    "export_onnx",
    "layer_inputs",
    "match_weights",
    "qdq_expressible",
    "quantize_graph",
]

#: opset of the written model (21: DequantizeLinear with int4 and block_size)
OPSET = 21
_TORCH_OPSET = 20  # the highest the TorchScript-based exporter writes

#: which ONNX ops may consume a weight of each layer kind
_CONSUMERS = {
    "conv": ("Conv",),
    "conv_transpose": ("ConvTranspose",),
    "linear": ("Gemm", "MatMul"),
    "embedding": ("Gather",),
}


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ValueError(
            "onnx export needs the onnx package: pip install 'quantviz[export]'"
        ) from exc
    return onnx


def export_float_onnx(handle: ModelHandle, *, constant_folding: bool = False) -> Any:
    """The float model as an ``onnx.ModelProto`` at :data:`OPSET` (input ``input``).

    Unfolded (see the module doc) unless ``constant_folding``: then as ``torch.onnx.export``
    writes it by default (BatchNorm folded into the convs), the graph AIMET's own export
    names its tensors after. The batch dimension is dynamic, except for a
    ``torch.export`` program exported with a static batch or whose graph passes the batch
    size between submodules as a symbolic int (the TorchScript tracer records that as a
    constant): there the file takes batches of the example input's size (``batch`` in the
    graph's doc string).
    """
    onnx = _require_onnx()
    from onnx import version_converter

    if handle.flavour == "onnx":
        return _source_graph(handle)
    buf = io.BytesIO()
    try:
        with (
            warnings.catch_warnings(),
            _traceable(handle.module) as symbolic,
            _tensor_forward(handle),
        ):
            warnings.simplefilter("ignore")
            static = bool(handle.meta.get("static_batch")) or symbolic
            dynamic = None if static else {"input": {0: "batch"}, "output": {0: "batch"}}
            torch.onnx.export(
                handle.module,
                (handle.example_input,),
                buf,
                dynamo=False,
                opset_version=_TORCH_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=dynamic,
                do_constant_folding=constant_folding,
            )
    except Exception as exc:
        raise ValueError(
            f"{handle.name}: torch.onnx.export failed ({type(exc).__name__}: {exc})"
        ) from None
    model = onnx.load_from_string(buf.getvalue())
    model = version_converter.convert_version(model, OPSET)
    batch = int(handle.example_input.shape[0]) if static else "dynamic"
    model.graph.doc_string = f"quantviz export of {handle.source}; batch: {batch}"
    constants_to_initializers(model.graph)
    name_nodes(model.graph)
    return model


def _source_graph(handle: ModelHandle) -> Any:
    """An ONNX model's own graph (its weights as they are now) at :data:`OPSET`: the QDQ
    export of an ONNX file rewrites that file's graph; one that already holds QDQ is
    refused (it would be quantized twice)."""
    from onnx import version_converter

    if handle.meta.get("file_config") is not None:
        raise ValueError(
            f"{handle.name}: an ONNX QDQ export of an ONNX file that already holds "
            "QuantizeLinear / DequantizeLinear nodes would be a re-export of a quantized "
            "model (quantized twice); export the configuration (json / yaml) or the "
            "quantized weights (safetensors) instead"
        )
    model = handle.module.graph(with_weights=True)  # type: ignore[operator]
    opset = int(handle.meta.get("onnx", {}).get("opset", 0))
    if opset < OPSET:
        try:
            model = version_converter.convert_version(model, OPSET)
        except Exception as exc:
            raise ValueError(
                f"{handle.name}: the ONNX file's opset {opset} cannot be converted to opset "
                f"{OPSET} (int4 codes and block_size need it): {type(exc).__name__}: {exc}"
            ) from None
    model.graph.doc_string = f"quantviz export of {handle.source}; batch: dynamic"
    constants_to_initializers(model.graph)
    name_nodes(model.graph)
    return model


@contextlib.contextmanager
def _tensor_forward(handle: ModelHandle) -> Iterator[None]:
    """A Hugging Face model traced as ``input_ids -> logits`` (its first output), with an
    explicit all-ones attention mask (transformers' mask inference is not traceable) and no
    key/value cache; the parameters keep their names. Other models are left as they are."""
    module = handle.module
    if not handle.task or "forward" in vars(module):
        yield
        return
    orig = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = orig(
            input_ids=x, attention_mask=torch.ones_like(x), use_cache=False, return_dict=False
        )
        return out[0]  # type: ignore[no-any-return]

    module.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.forward


@contextlib.contextmanager
def _traceable(module: torch.nn.Module) -> Iterator[bool]:
    """Let the TorchScript tracer run an unflattened ``torch.export`` module.

    Its input check reads the shapes the tracer refuses to give (``JIT Tracing of SymInts
    isn't supported``): switched off for the export, and restored. Yields whether the graph
    computes symbolic sizes (``aten.sym_size``), which the tracer freezes.
    """
    check = getattr(module, "check_input_constraints", None)
    symbolic = False
    for sub in module.modules():
        graph = getattr(sub, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            symbolic = symbolic or any(
                n.op == "call_function" and "sym_size" in str(n.target) for n in graph.nodes
            )
    try:
        if check is not None:
            module.check_input_constraints = False
        yield symbolic
    finally:
        if check is not None:
            module.check_input_constraints = check


# ---------------------------------------------------------------------------------------
# matching weights to the graph
# ---------------------------------------------------------------------------------------
def _kind_group(kind: str) -> str:
    for g in ("conv_transpose", "conv", "linear", "embedding"):
        if kind.startswith(g):
            return g
    return kind


def match_weights(
    handle: ModelHandle, model: Any
) -> tuple[dict[str, list[WeightUse]], dict[str, str]]:
    """fqn -> the uses of its weight in ``model``; and fqn -> why a layer was not found.

    A layer matches an initializer consumed by an op of its kind whose values, in torch's
    layout, equal the layer's weight. Among equal candidates the one named like the
    parameter wins, then the first in graph order; copies of a matched weight left
    unclaimed (an exporter may duplicate a tied weight) go to the same layer.
    """
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    consumers = consumers_of(graph)
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    uses: dict[str, list[WeightUse]] = {}  # init -> uses
    order: list[str] = []
    for t in graph.initializer:
        if t.data_type in floats and len(t.dims) >= 2:
            u = weight_uses(t.name, len(t.dims), consumers)
            if u:
                uses[t.name] = u
                order.append(t.name)
    inits = {t.name: t for t in graph.initializer if t.name in uses}
    arrays: dict[str, np.ndarray] = {}

    def array(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    def equal(name: str, use: WeightUse, w: np.ndarray) -> bool:
        dims = tuple(inits[name].dims)
        if tuple(dims[p] for p in use.perm) != w.shape:
            return False
        a = array(name)
        return a.dtype == w.dtype and np.array_equal(a.transpose(use.perm), w)

    found: dict[str, list[WeightUse]] = {}
    claimed: dict[str, str] = {}  # init -> fqn
    missing: dict[str, str] = {}
    weights: dict[str, np.ndarray] = {}
    for lay in handle.layers:
        w = handle.quant_weight(lay.fqn).detach().cpu()
        wa = w.numpy() if w.dtype != torch.bfloat16 else w.float().numpy()
        weights[lay.fqn] = wa
        ops = _CONSUMERS.get(_kind_group(lay.kind), ())
        cands = [
            n
            for n in order
            if n not in claimed and any(u.op_type in ops and equal(n, u, wa) for u in uses[n])
        ]
        if not cands:
            missing[lay.fqn] = (
                f"its weight {list(wa.shape)} is not found in the ONNX graph as the weight of "
                f"a {' / '.join(ops) or 'known'} node; kept float"
            )
            continue
        best = lay.param_name if lay.param_name in cands else cands[0]
        claimed[best] = lay.fqn
        found[lay.fqn] = [u for u in uses[best] if u.op_type in ops]
    for n in order:  # unclaimed copies of a matched weight
        if n in claimed:
            continue
        for fqn in found:
            lay = handle.layer(fqn)
            ops = _CONSUMERS.get(_kind_group(lay.kind), ())
            good = [u for u in uses[n] if u.op_type in ops and equal(n, u, weights[fqn])]
            if good:
                claimed[n] = fqn
                found[fqn].extend(good)
                break
    return found, missing


def layer_inputs(handle: ModelHandle, model: Any | None = None) -> dict[str, tuple[str, str]]:
    """fqn -> (weight initializer name, data input tensor name) in the exported float graph.

    The data input is that of the first node using the weight ("" for embeddings).
    """
    model = model if model is not None else export_float_onnx(handle)
    found, _ = match_weights(handle, model)
    return {f: (u[0].init, u[0].data) for f, u in found.items() if u}


# ---------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------
def _int_tensor(name: str, values: np.ndarray, onnx_type: int, np_type: Any) -> Any:
    """An integer initializer; 4-bit types packed two per byte (low nibble first)."""
    from onnx import TensorProto, helper, numpy_helper

    if onnx_type not in (TensorProto.INT4, TensorProto.UINT4):
        return numpy_helper.from_array(np.array(values, dtype=np_type, order="C"), name)
    flat = (values.reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    packed = flat[0::2] | (flat[1::2] << 4)
    return helper.make_tensor(name, onnx_type, list(values.shape), packed.tobytes(), raw=True)


#: scaled codebooks DequantizeLinear takes as they are (opset 21: the float8 types)
FLOAT8 = {
    "fp8_e4m3": ("FLOAT8E4M3FN", torch.float8_e4m3fn),
    "fp8_e5m2": ("FLOAT8E5M2", torch.float8_e5m2),
}


def qdq_expressible(spec: QuantSpec) -> bool:
    """Whether a weight quantized with ``spec`` is written as codes + DequantizeLinear."""
    return spec.quantizer == "uniform" or spec.quantizer in FLOAT8


def _float8_tensor(name: str, values: np.ndarray, quantizer: str) -> Any:
    from onnx import TensorProto, helper

    type_name, torch_t = FLOAT8[quantizer]
    raw = torch.from_numpy(np.array(values, dtype=np.float32)).to(torch_t).view(torch.uint8)
    return helper.make_tensor(
        name, getattr(TensorProto, type_name), list(values.shape), raw.numpy().tobytes(), raw=True
    )


def _dq_weight(
    fqn: str, name: str, c: Codes, perm: tuple[int, ...], float_type: Any = np.float32
) -> tuple[list[Any], list[Any]]:
    """(initializers, nodes) producing tensor ``name`` (initializer layout) from codes.

    ``float_type`` is the initializer's float type (DequantizeLinear outputs the scale's).
    Affine codes are stored as integers; FP8 codes as the float8 values themselves
    (``x_hat = value * scale``) with a float8 zero point of 0.
    """
    from onnx import helper, numpy_helper

    rv = c.row_view
    spec = c.spec
    assert c.scale is not None
    if c.kind == "affine":
        assert c.zero_point is not None
        onnx_t, np_t, _ = int_type(c.code_bits, c.signed)
        codes = c.shaped().numpy()
        zp = c.params_shaped(c.zero_point).numpy()
    else:  # FP8: the stored values are the base levels (the float8 numbers)
        codes = c.shaped(c.base_values()).numpy()
        zp = np.zeros(c.params_shaped(c.scale).shape, np.float32)
    scale = c.params_shaped(c.scale).numpy().astype(float_type)
    inv = tuple(int(i) for i in np.argsort(perm))  # torch layout -> initializer layout
    identity = perm == tuple(range(len(perm)))
    attrs: dict[str, Any] = {}
    reshape_to: tuple[int, ...] | None = None
    if rv.granularity == "per_tensor":
        codes = codes.transpose(inv)
    elif rv.granularity == "per_channel":
        codes = codes.transpose(inv)
        attrs["axis"] = perm[rv.axis]
    elif len(rv.shape) == 2:  # per group along the rows of [out, in]
        if identity:
            attrs.update(axis=1, block_size=rv.row_len)
        else:  # the initializer is [in, out]: blocks along its axis 0
            codes, scale, zp = codes.T, scale.T, zp.T
            attrs.update(axis=0, block_size=rv.row_len)
    elif identity:  # a conv kernel: blocks on its [C, K] view, then back to its shape
        attrs.update(axis=1, block_size=rv.row_len)
        reshape_to = rv.shape
    else:
        raise ValueError(
            f"per_group on a transposed {len(rv.shape)}-D weight cannot be written as QDQ"
        )
    base = f"{name}_quantviz"
    if c.kind == "affine":
        stored = [
            _int_tensor(f"{base}_codes", codes, onnx_t, np_t),
            _int_tensor(f"{base}_zero_point", zp, onnx_t, np_t),
        ]
        what = f"{c.code_bits}-bit integer codes"
    else:
        stored = [
            _float8_tensor(f"{base}_codes", codes, spec.quantizer),
            _float8_tensor(f"{base}_zero_point", zp, spec.quantizer),
        ]
        what = f"{FLOAT8[spec.quantizer][0].lower()} values"
    inits = [
        stored[0],
        numpy_helper.from_array(np.array(scale, order="C"), f"{base}_scale"),
        stored[1],
    ]
    out = f"{base}_2d" if reshape_to else name
    doc = f"quantviz {fqn}: weight {spec.short()} ({what})"
    nodes = [
        helper.make_node(
            "DequantizeLinear",
            [f"{base}_codes", f"{base}_scale", f"{base}_zero_point"],
            [out],
            name=f"{base}_DQ",
            doc_string=doc,
            **attrs,
        )
    ]
    if reshape_to:
        inits.append(numpy_helper.from_array(np.array(reshape_to, dtype=np.int64), f"{base}_shape"))
        nodes.append(
            helper.make_node("Reshape", [out, f"{base}_shape"], [name], name=f"{base}_Reshape")
        )
    return inits, nodes


def _float_constant(name: str, w: torch.Tensor, spec: QuantSpec, perm: tuple[int, ...]) -> Any:
    from onnx import numpy_helper

    from quantviz.core import quantize

    dq = quantize(w.detach().cpu(), spec, metrics=False).dequantized.to(torch.float32).numpy()
    inv = tuple(int(i) for i in np.argsort(perm))
    return numpy_helper.from_array(np.ascontiguousarray(dq.transpose(inv)), name)


# ---------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------
# the export
# ---------------------------------------------------------------------------------------
def export_onnx(
    handle: ModelHandle,
    config: ModelConfig,
    path: str | os.PathLike[str],
    *,
    stats: Mapping[str, LayerStats] | None = None,
    strict: bool = False,
) -> ExportResult:
    """Write ``handle``'s model with ``config`` as QDQ ONNX to ``path`` (see module doc)."""
    onnx = _require_onnx()
    from quantviz.io.exporters import ExportResult

    path = Path(path)
    model = export_float_onnx(handle)
    unsupported, details = quantize_graph(handle, config, model, stats=stats, strict=strict)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return ExportResult("onnx", [path], unsupported, details=details)


def quantize_graph(
    handle: ModelHandle,
    config: ModelConfig,
    model: Any,
    *,
    stats: Mapping[str, LayerStats] | None = None,
    strict: bool = False,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Rewrite ``model`` (the float export of ``handle``, in place) with ``config`` as QDQ.

    Returns ``(unsupported, details)`` (see :class:`~quantviz.io.exporters.ExportResult`);
    with ``strict`` any unsupported layer is a ``ValueError`` before anything is rewritten.
    """
    onnx = _require_onnx()
    from quantviz.core import quantize
    from quantviz.core.codes import codes_of, dequantize_codes
    from quantviz.eval.apply import fit_static
    from quantviz.io.exporters import check_strict

    graph = model.graph
    constants_to_initializers(graph)
    name_nodes(graph)
    found, missing = match_weights(handle, model)
    float_types = {
        t.name: onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in graph.initializer
    }
    unsupported: list[tuple[str, str]] = []
    new_inits: list[Any] = []
    replaced: dict[str, Any] = {}  # initializer name -> its replacement (or None: removed)
    head: list[Any] = []  # weight DQ nodes, at the top of the graph
    before: dict[str, list[Any]] = {}  # node name -> activation nodes inserted before it
    rewire: dict[str, str] = {}  # node name -> its new data input
    qdq_weights = qdq_acts = 0
    code_types: dict[str, int] = {}
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        if lc.weight is None and lc.activation is None:
            continue
        if lay.fqn not in found:
            unsupported.append((lay.fqn, missing[lay.fqn]))
            continue
        uses = found[lay.fqn]
        spec = lc.weight
        if spec is not None:
            w = handle.quant_weight(lay.fqn)
            for init in dict.fromkeys(u.init for u in uses):
                perm = next(u.perm for u in uses if u.init == init)
                try:
                    if qdq_expressible(spec):
                        r = quantize(w.detach().cpu(), spec)
                        c = codes_of(r, w)
                        if not torch.equal(dequantize_codes(c), r.dequantized):
                            raise ValueError("the integer codes do not reproduce the weight")
                        inits, nodes = _dq_weight(lay.fqn, init, c, perm, float_types[init])
                        new_inits += inits
                        head += nodes
                        replaced[init] = None
                        key = _type_name(inits[0].data_type)
                        code_types[key] = code_types.get(key, 0) + 1
                        qdq_weights += 1
                    else:
                        replaced[init] = _float_constant(init, w, spec, perm)
                except ValueError as exc:
                    raise ValueError(f"layer {lay.fqn}: weight: {exc}") from None
            if not qdq_expressible(spec):
                unsupported.append(
                    (
                        lay.fqn,
                        f"weight {spec.short()}: DequantizeLinear expresses only uniform "
                        "and FP8 grids; written as the dequantized float constant",
                    )
                )
        act = lc.activation
        if act is None:
            continue
        if all(u.op_type == "Gather" for u in uses):
            continue  # an embedding's input is indices: nothing to quantize (as in quantviz)
        if act.dynamic or act.quantizer != "uniform":
            why = "dynamic" if act.dynamic else f"non-uniform ({act.quantizer})"
            unsupported.append(
                (lay.fqn, f"input activation {act.short()}: {why} quantization; kept float")
            )
            continue
        st = None if stats is None else stats.get(lay.fqn)
        if st is None:
            raise ValueError(
                f"layer {lay.fqn}: activation: a static spec needs calibration statistics "
                "(pass stats= / --data)"
            )
        fq = fit_static(lay.fqn, act, st)
        for i, u in enumerate(x for x in uses if x.op_type != "Gather"):
            inits, nodes, out = qdq_activation(lay.fqn, u.data, fq, f"_{i}" if i else "")
            new_inits += inits
            before.setdefault(u.node, []).extend(nodes)
            rewire[u.node] = out
        qdq_acts += 1
    check_strict("onnx", unsupported, strict)

    kept = []
    for t in graph.initializer:
        if t.name not in replaced:
            kept.append(t)
        elif replaced[t.name] is not None:
            kept.append(replaced[t.name])
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    # initializers kept as graph inputs (keep_initializers_as_inputs): a DQ output now
    computed = {n for n, t in replaced.items() if t is None}
    if any(i.name in computed for i in graph.input):
        inputs = [i for i in graph.input if i.name not in computed]
        del graph.input[:]
        graph.input.extend(inputs)
    nodes_out = list(head)
    for node in graph.node:
        nodes_out.extend(before.get(node.name, []))
        if node.name in rewire:
            node.input[0] = rewire[node.name]
        nodes_out.append(node)
    del graph.node[:]
    graph.node.extend(nodes_out)
    model.producer_name = "quantviz"
    onnx.checker.check_model(model)
    dim = graph.input[0].type.tensor_type.shape.dim if graph.input else []
    batch: int | str = "dynamic"
    if dim and dim[0].HasField("dim_value"):
        batch = int(dim[0].dim_value)
    details = {
        "opset": OPSET,
        "batch": batch,
        "qdq_weights": qdq_weights,
        "qdq_activations": qdq_acts,
        "weight_code_types": code_types,
    }
    return unsupported, details


def _type_name(data_type: int) -> str:
    from onnx import helper

    return str(helper.tensor_dtype_to_string(data_type)).removeprefix("TensorProto.").lower()
