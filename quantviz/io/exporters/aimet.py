"""AIMET quantization encodings (the 0.6.1 JSON layout Qualcomm's toolchain reads).

::

    {"version": "0.6.1",
     "activation_encodings": {"<tensor>": [{"bitwidth": 8, "dtype": "int",
         "is_symmetric": "False", "max": 2.6, "min": -2.1, "offset": -114, "scale": 0.0185}]},
     "param_encodings": {"conv1.weight": [{...}, ... one entry per output channel ...]}}

AIMET dequantizes an unsigned code ``u`` in ``[0, 2^b - 1]`` as ``(u + offset) * scale``, so
``offset`` is negative: for quantviz's grid ``(q - zero_point) * scale`` with ``q`` in
``[quant_min, quant_max]`` it is ``quant_min - zero_point`` (``-zero_point`` for asymmetric
grids, ``-2^(b-1)`` — or ``-(2^(b-1) - 1)`` restricted — for symmetric ones); ``min`` /
``max`` are the lowest / highest level. Parameters are keyed by their parameter name
(AIMET's PyTorch export names them so), activations by the ONNX name of the layer's input
tensor in ``torch.onnx.export``'s graph (``input``, ``/act/Relu_output_0``; without the
onnx package, ``<fqn>:input``).

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

__all__ = ["AIMET_VERSION", "encoding_entries", "export_aimet"]

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
    qmin, qmax = spec.qrange
    out = []
    for s, z in zip(scale.reshape(-1).tolist(), zero_point.reshape(-1).tolist()):
        offset = int(qmin - z)
        s32 = float(torch.tensor(s, dtype=torch.float32))
        out.append(
            {
                "bitwidth": int(spec.bits),
                "dtype": "int",
                "is_symmetric": "True" if spec.symmetric else "False",
                "max": float((qmax - z) * s32),
                "min": float(offset * s32),
                "offset": offset,
                "scale": s32,
            }
        )
    return out


def _activation_names(handle: ModelHandle) -> tuple[dict[str, str], str]:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return {f: f"{f}:input" for f in handle.fqns}, "fqn"
    from quantviz.io.exporters.onnx_fmt import layer_inputs

    names = {f: data for f, (_, data) in layer_inputs(handle).items()}
    return {f: names.get(f, f"{f}:input") for f in handle.fqns}, "onnx"


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
                    r = quantize(handle.weight(lay.fqn).detach().cpu(), spec)
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
