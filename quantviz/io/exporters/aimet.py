"""AIMET quantization encodings (the 0.6.1 JSON layout Qualcomm's toolchain reads).

::

    {"version": "0.6.1",
     "activation_encodings": {"<tensor>": [{"bitwidth": 8, "dtype": "int",
         "is_symmetric": "False", "max": 2.6, "min": -2.1, "offset": -114, "scale": 0.0185}]},
     "param_encodings": {"conv1.weight": [{...}, ... one entry per output channel ...]}}

How AIMET reads an entry: it rebuilds the grid from ``bitwidth`` and ``min`` / ``max`` —
``scale = (max - min) / (2^b - 1)``, ``offset = round(min / scale)`` — and quantizes
``u = clamp(round(x / scale) - offset, 0, 2^b - 1)``, ``x' = (u + offset) * scale``: always
the full ``2^b``-level grid. Every entry here is written so that this reading gives
quantviz's grid exactly (same scale, same levels): ``min = offset * scale`` and ``max =
(2^b - 1 + offset) * scale``, ``offset = quant_min - zero_point`` (negative), so

* asymmetric: ``offset = -zero_point``; AIMET's grid is quantviz's.
* symmetric, full range (quantviz's default, as torch's observers: ``scale = absmax /
  127.5`` at 8 bits, levels ``-128 .. 127``): ``offset = -2^(b-1)``; AIMET's grid is
  quantviz's.
* symmetric, restricted range (levels ``-127 .. 127``, ``scale = absmax / 127``: AIMET's
  own symmetric convention): written as AIMET writes its symmetric encodings, ``offset =
  -2^(b-1)``, ``min = -2^(b-1) * scale``, ``max = (2^(b-1) - 1) * scale``, so AIMET reads
  the same scale and levels (writing ``min = -127 * scale`` instead would make AIMET
  rebuild ``scale * 254 / 255`` and move most values to another level). AIMET's grid has
  one more level, ``-128 * scale``, below quantviz's lowest: only a value clipped below
  ``-127.5 * scale`` (possible with mse / percentile / kl calibration, never with minmax)
  is quantized differently there.

So the file reproduces quantviz's dequantized weights, whose symmetric scale follows torch
(``absmax / 127.5``) unless the spec asks for the restricted range (AIMET's ``absmax /
127``).

Parameters are keyed by their parameter name (AIMET's PyTorch export names them so).
Activations are keyed as AIMET's export keys them: by the name of the tensor in the ONNX
graph of ``torch.onnx.export`` (the TorchScript exporter AIMET uses), i.e. the OUTPUT of the
op producing the quantized layer's input (``/act/Relu_output_0``,
``/blocks/blocks.0/project/project.0/Conv_output_0``; the model input is ``input``). The
layer's node is found by its module scope (``/blocks/blocks.0/depthwise/depthwise.0/Conv``
is layer ``blocks.0.depthwise.0``), so BatchNorm folded into a Conv by the exporter does
not hide it. Without the onnx package, or for a layer with no node of its own in the
graph, the key is ``<fqn>:input`` (reported in ``details["activation_names"]``).

Not expressible (listed in ``ExportResult.unsupported``, left out of the file): non-uniform
quantizers, per-group scales, per-channel scales on an axis other than the output-channel
axis, bit widths below 4 (the spec's minimum), and dynamic activation quantization.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core.spec import ModelConfig, QuantSpec
from quantviz.io.atomic import atomic_write_text

if TYPE_CHECKING:
    from quantviz.io.exporters import ExportResult
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["AIMET_VERSION", "activation_tensor_names", "encoding_entries", "export_aimet"]

AIMET_VERSION = "0.6.1"


def _why_not(spec: QuantSpec, kind: str, *, weight: bool) -> str | None:
    """Why ``spec`` cannot be an AIMET encoding (None if it can)."""
    if spec.quantizer != "uniform":
        return f"{spec.quantizer} is not an affine integer grid"
    if spec.bits < 4:
        return f"{spec.bits}-bit: AIMET encodings need bitwidth >= 4"
    if not weight and spec.dynamic:
        return "dynamic quantization has no fixed encoding"
    if spec.granularity == "per_group":
        return "per-group scales are not in the 0.6.1 layout"
    if spec.granularity == "per_channel":
        want = 1 if kind.startswith("conv_transpose") else 0
        if spec.axis != want:
            return f"per-channel on axis {spec.axis}; AIMET scales the output channel (axis {want})"
    return None


def encoding_entries(
    scale: torch.Tensor, zero_point: torch.Tensor, spec: QuantSpec
) -> list[dict[str, Any]]:
    """One AIMET encoding dict per row of ``scale`` / ``zero_point`` (see module doc)."""
    qmin, _ = spec.qrange
    if spec.symmetric and spec.restricted_range:
        qmin -= 1  # AIMET's symmetric grid: the full 2^b levels, same scale (module doc)
    top = 2**spec.bits - 1
    out = []
    for s, z in zip(scale.reshape(-1).tolist(), zero_point.reshape(-1).tolist()):
        offset = int(qmin - z)
        s32 = float(torch.tensor(s, dtype=torch.float32))
        out.append(
            {
                "bitwidth": int(spec.bits),
                "dtype": "int",
                "is_symmetric": "True" if spec.symmetric else "False",
                "max": float((top + offset) * s32),
                "min": float(offset * s32),
                "offset": offset,
                "scale": s32,
            }
        )
    return out


_LAYER_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _scope_fqn(node_name: str) -> str:
    """``/blocks/blocks.0/depthwise/depthwise.0/Conv`` -> ``blocks.0.depthwise.0``.

    The TorchScript exporter names a node by its module scope, one component per level,
    where a child of a container is written ``<parent attribute>.<child attribute>``.
    """
    parts = [p for p in node_name.split("/") if p][:-1]
    fqn: list[str] = []
    prev = ""
    for p in parts:
        if prev and p.startswith(prev + "."):
            fqn.append(p[len(prev) + 1 :])
        else:
            fqn.append(p)
        prev = p
    return ".".join(fqn)


def activation_tensor_names(handle: ModelHandle, model: Any) -> dict[str, str]:
    """fqn -> name of the tensor entering that layer in ``model`` (an exported ONNX graph)."""
    first: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in _LAYER_OPS and node.input:
            first.setdefault(_scope_fqn(node.name), node.input[0])
    out = {}
    for lay in handle.layers:
        name = first.get(lay.module_fqn)
        if name is not None:
            out[lay.fqn] = name
    return out


def _activation_names(handle: ModelHandle) -> tuple[dict[str, str], str]:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return {f: f"{f}:input" for f in handle.fqns}, "fqn"
    from quantviz.io.exporters.onnx_fmt import export_float_onnx

    # AIMET names the tensors of its own export: torch.onnx.export's default graph, with
    # BatchNorm folded into the convs (so the tensor entering a conv after a BN is the
    # folded conv's output, not a BatchNormalization node's)
    names = activation_tensor_names(handle, export_float_onnx(handle, constant_folding=True))
    missing = [f for f in handle.fqns if f not in names]
    how = "onnx" if not missing else f"onnx ({len(missing)} by fqn: {', '.join(missing)})"
    return {f: names.get(f, f"{f}:input") for f in handle.fqns}, how


def export_aimet(
    handle: ModelHandle,
    config: ModelConfig,
    path: str | os.PathLike[str],
    *,
    stats: Mapping[str, LayerStats] | None = None,
    strict: bool = False,
) -> ExportResult:
    """Write AIMET 0.6.1 encodings of ``config`` on ``handle`` to ``path`` (atomically)."""
    from quantviz.core import quantize
    from quantviz.eval.apply import fit_static
    from quantviz.io.exporters import ExportResult, check_strict

    path = Path(path)
    unsupported: list[tuple[str, str]] = []
    params: dict[str, list[dict[str, Any]]] = {}
    acts: dict[str, list[dict[str, Any]]] = {}
    act_names: dict[str, str] | None = None
    naming = ""
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        spec = lc.weight
        if spec is not None:
            why = _why_not(spec, lay.kind, weight=True)
            if why:
                unsupported.append((lay.fqn, f"weight {spec.short()}: {why}; not written"))
            else:
                try:
                    r = quantize(handle.quant_weight(lay.fqn).detach().cpu(), spec)
                except ValueError as exc:
                    raise ValueError(f"layer {lay.fqn}: weight: {exc}") from None
                params[lay.param_name] = encoding_entries(r.fitted.scale, r.fitted.zero_point, spec)
        act = lc.activation
        if act is None:
            continue
        why = _why_not(act, lay.kind, weight=False)
        if why:
            unsupported.append((lay.fqn, f"input activation {act.short()}: {why}; not written"))
            continue
        st = None if stats is None else stats.get(lay.fqn)
        if st is None:
            raise ValueError(
                f"layer {lay.fqn}: activation: a static spec needs calibration statistics "
                "(pass stats= / --data)"
            )
        fq = fit_static(lay.fqn, act, st)
        if act_names is None:
            act_names, naming = _activation_names(handle)
        acts[act_names[lay.fqn]] = encoding_entries(
            torch.tensor([fq.scale]), torch.tensor([fq.zero_point]), act
        )
    check_strict("aimet", unsupported, strict)
    doc = {"version": AIMET_VERSION, "activation_encodings": acts, "param_encodings": params}
    atomic_write_text(path, json.dumps(doc, indent=4, allow_nan=False) + "\n")
    details: dict[str, Any] = {"param_encodings": len(params), "activation_encodings": len(acts)}
    if naming:
        details["activation_names"] = naming
    return ExportResult("aimet", [path], unsupported, details=details)
