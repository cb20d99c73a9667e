"""ONNX export with QuantizeLinear / DequantizeLinear pairs (needs the ``export`` extra).

The float model is exported with the TorchScript-based ``torch.onnx.export``
(``dynamo=False``: the dynamo exporter needs ``onnxscript``, which quantviz does not
require), at opset 20 and converted to opset 21 (the first with ``block_size``). Then:

* uniform-quantized weights become ``W_fq -> QuantizeLinear -> DequantizeLinear -> W``
  where ``W_fq`` is the fake-quantized float weight (so the pair reproduces quantviz's
  grid exactly): per tensor (scalar scale), per channel (``axis``), per group
  (``axis=1, block_size=group_size`` on the ``[C, K]`` view, followed by a ``Reshape`` for
  conv kernels). Codes are int8/uint8 up to 8 bits and int16/uint16 above (the true bit
  width is in the node's ``doc_string``; the grid itself is enforced by the values);
* static uniform activation specs put ``[Clip ->] QuantizeLinear -> DequantizeLinear`` on
  the layer's input, with the scale / zero point fitted on the calibration statistics
  (``Clip`` when the code range is narrower than the integer type's);
* non-uniform weights (k-means, log2, NF4, FP4, FP8) are written as their dequantized float
  constants, and dynamic or non-uniform activation specs are left float — both are listed
  in ``ExportResult.unsupported`` by layer name.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.io.atomic import atomic_path

if TYPE_CHECKING:
    from quantviz.io.exporters import ExportResult
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["OPSET", "export_float_onnx", "export_onnx", "layer_inputs"]

#: opset of the written model (21: QuantizeLinear/DequantizeLinear with block_size)
OPSET = 21
_TORCH_OPSET = 20  # the highest the TorchScript-based exporter writes


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ValueError(
            "onnx export needs the onnx package: pip install 'quantviz[export]'"
        ) from exc
    return onnx


def export_float_onnx(handle: ModelHandle) -> Any:
    """The float model as an ``onnx.ModelProto`` at :data:`OPSET` (input ``input``)."""
    onnx = _require_onnx()
    from onnx import version_converter

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                handle.module,
                (handle.example_input,),
                buf,
                dynamo=False,
                opset_version=_TORCH_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
    except Exception as exc:
        raise ValueError(
            f"{handle.name}: torch.onnx.export failed ({type(exc).__name__}: {exc})"
        ) from None
    model = onnx.load_from_string(buf.getvalue())
    return version_converter.convert_version(model, OPSET)


def _initializers(graph: Any) -> dict[str, Any]:
    return {t.name: t for t in graph.initializer}


def _find_weight(graph: Any, name: str, w: torch.Tensor) -> Any | None:
    """The initializer holding parameter ``name``: by name, else by identical values."""
    from onnx import numpy_helper

    inits = _initializers(graph)
    if name in inits:
        return inits[name]
    target = w.detach().cpu().to(torch.float32).numpy()
    for t in graph.initializer:
        if tuple(t.dims) == target.shape and np.array_equal(numpy_helper.to_array(t), target):
            return t
    return None


def layer_inputs(handle: ModelHandle, model: Any | None = None) -> dict[str, tuple[str, str]]:
    """fqn -> (weight tensor name, data input tensor name) in the exported float graph."""
    model = model if model is not None else export_float_onnx(handle)
    graph = model.graph
    out: dict[str, tuple[str, str]] = {}
    for lay in handle.layers:
        init = _find_weight(graph, lay.param_name, handle.weight(lay.fqn))
        if init is None:
            continue
        for node in graph.node:
            if init.name in node.input[1:] and node.input:
                out[lay.fqn] = (init.name, node.input[0])
                break
    return out


def _int_type(spec_bits: int, signed: bool) -> tuple[Any, Any, tuple[int, int]]:
    from onnx import TensorProto

    if spec_bits <= 8:
        return (
            (TensorProto.INT8, np.int8, (-128, 127))
            if signed
            else (
                TensorProto.UINT8,
                np.uint8,
                (0, 255),
            )
        )
    if signed:
        return TensorProto.INT16, np.int16, (-32768, 32767)
    return TensorProto.UINT16, np.uint16, (0, 65535)


def _qdq_weight(graph: Any, init: Any, fqn: str, w: torch.Tensor, spec: QuantSpec) -> None:
    """Replace initializer ``init`` by fake-quantized values -> Q -> DQ (-> Reshape)."""
    from onnx import helper, numpy_helper

    from quantviz.core import quantize

    r = quantize(w.detach().cpu(), spec)
    rv = r.row_view
    name = init.name
    base = f"{name}_quantviz"
    _, np_t, _ = _int_type(spec.bits, spec.symmetric)
    scale = r.fitted.scale.to(torch.float32).numpy()
    zp = r.fitted.zero_point.numpy().astype(np_t)
    dq = r.dequantized.to(torch.float32).numpy()
    attrs: dict[str, Any] = {}
    reshape_to: tuple[int, ...] | None = None
    if rv.granularity == "per_tensor":
        scale, zp = scale.reshape(()), zp.reshape(())
    elif rv.granularity == "per_channel":
        attrs["axis"] = rv.axis
    else:  # per_group on the [C, K] view
        c = rv.shape[0]
        k = rv.rows * rv.row_len // c
        groups = k // rv.row_len
        scale, zp = scale.reshape(c, groups), zp.reshape(c, groups)
        attrs.update(axis=1, block_size=rv.row_len)
        if len(rv.shape) != 2:
            reshape_to = rv.shape
            dq = dq.reshape(c, k)
    graph.initializer.remove(init)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(dq), f"{base}_float"),
            numpy_helper.from_array(np.asarray(scale, np.float32), f"{base}_scale"),
            numpy_helper.from_array(np.asarray(zp), f"{base}_zero_point"),
        ]
    )
    doc = f"quantviz {fqn}: weight {spec.short()} ({spec.bits}-bit codes)"
    ins = [f"{base}_scale", f"{base}_zero_point"]
    dq_out = f"{base}_2d" if reshape_to else name
    nodes = [
        helper.make_node(
            "QuantizeLinear", [f"{base}_float", *ins], [f"{base}_q"], name=f"{base}_Q", **attrs
        ),
        helper.make_node(
            "DequantizeLinear", [f"{base}_q", *ins], [dq_out], name=f"{base}_DQ", **attrs
        ),
    ]
    for n in nodes:
        n.doc_string = doc
    if reshape_to:
        graph.initializer.append(
            numpy_helper.from_array(np.array(reshape_to, dtype=np.int64), f"{base}_shape")
        )
        nodes.append(
            helper.make_node("Reshape", [dq_out, f"{base}_shape"], [name], name=f"{base}_Reshape")
        )
    for i, n in enumerate(nodes):
        graph.node.insert(i, n)


def _replace_constant(init: Any, w: torch.Tensor, spec: QuantSpec) -> None:
    from onnx import numpy_helper

    from quantviz.core import quantize

    dq = quantize(w.detach().cpu(), spec).dequantized.to(torch.float32).numpy()
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(dq), init.name))


def _qdq_activation(graph: Any, fqn: str, data: str, weight: str, fq: Any) -> None:
    """Insert ``[Clip ->] Q -> DQ`` between ``data`` and the node consuming ``weight``."""
    from onnx import helper, numpy_helper

    spec: QuantSpec = fq.spec
    _, np_t, (tmin, tmax) = _int_type(spec.bits, spec.symmetric)
    qmin, qmax = spec.qrange
    base = f"{fqn}_input_quantviz"
    s, z = float(fq.scale), int(fq.zero_point)
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(s, dtype=np.float32), f"{base}_scale"),
            numpy_helper.from_array(np.array(z, dtype=np_t), f"{base}_zero_point"),
        ]
    )
    nodes = []
    src = data
    if (qmin, qmax) != (tmin, tmax):
        lo, hi = fq.clip_range
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(lo, dtype=np.float32), f"{base}_clip_min"),
                numpy_helper.from_array(np.array(hi, dtype=np.float32), f"{base}_clip_max"),
            ]
        )
        nodes.append(
            helper.make_node(
                "Clip",
                [data, f"{base}_clip_min", f"{base}_clip_max"],
                [f"{base}_clipped"],
                name=f"{base}_Clip",
            )
        )
        src = f"{base}_clipped"
    ins = [f"{base}_scale", f"{base}_zero_point"]
    nodes += [
        helper.make_node("QuantizeLinear", [src, *ins], [f"{base}_q"], name=f"{base}_Q"),
        helper.make_node("DequantizeLinear", [f"{base}_q", *ins], [base], name=f"{base}_DQ"),
    ]
    for n in nodes:
        n.doc_string = f"quantviz {fqn}: input activation {spec.short()}"
    # insert right before the consumer, which reads the quantized tensor from now on
    for idx, node in enumerate(graph.node):
        if weight in node.input[1:] and node.input and node.input[0] == data:
            node.input[0] = base
            for j, n in enumerate(nodes):
                graph.node.insert(idx + j, n)
            return
    raise ValueError(f"layer {fqn}: no node reads {data!r} with weight {weight!r}")


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
    from quantviz.eval.apply import fit_static
    from quantviz.io.exporters import ExportResult, check_strict

    path = Path(path)
    model = export_float_onnx(handle)
    graph = model.graph
    names = layer_inputs(handle, model)
    unsupported: list[tuple[str, str]] = []
    qdq_weights = qdq_acts = 0
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        if lc.weight is None and lc.activation is None:
            continue
        if lay.fqn not in names:
            unsupported.append((lay.fqn, "its weight is not found in the ONNX graph; kept float"))
            continue
        wname, data = names[lay.fqn]
        w = handle.weight(lay.fqn)
        spec = lc.weight
        if spec is not None:
            init = _initializers(graph)[wname]
            try:
                if spec.quantizer == "uniform":
                    _qdq_weight(graph, init, lay.fqn, w, spec)
                    qdq_weights += 1
                else:
                    _replace_constant(init, w, spec)
            except ValueError as exc:
                raise ValueError(f"layer {lay.fqn}: weight: {exc}") from None
            if spec.quantizer != "uniform":
                unsupported.append(
                    (
                        lay.fqn,
                        f"weight {spec.short()}: QuantizeLinear/DequantizeLinear express only "
                        "uniform grids; written as the dequantized float constant",
                    )
                )
        act = lc.activation
        if act is None:
            continue
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
        _qdq_activation(graph, lay.fqn, data, wname, fit_static(lay.fqn, act, st))
        qdq_acts += 1
    check_strict("onnx", unsupported, strict)
    model.producer_name = "quantviz"
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return ExportResult(
        "onnx",
        [path],
        unsupported,
        details={"opset": OPSET, "qdq_weights": qdq_weights, "qdq_activations": qdq_acts},
    )
