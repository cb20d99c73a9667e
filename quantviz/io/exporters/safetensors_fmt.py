"""Quantized weights as ``safetensors``: integer codes, scales, zero points, codebooks.

For every quantized layer with weight parameter ``P`` the file holds

* ``P:codes`` — the integer code of every element, in the row order of the layer's row
  view (see :class:`quantviz.core.quantizers.base.RowView`), stored unsigned from 0:
  two per byte for <= 4 bits (low nibble first, ``uint4x2``), one byte for 5..8 bits
  (``uint8``), and ``int16`` (minus 32768) above. Uniform codes are ``q - quant_min``;
  k-means, log2, NF4, FP4 and FP8 store the index into the row's sorted levels;
* ``P:scale`` (float32 [R]) and ``P:zero_point`` (int32 [R], uniform only);
* ``P:levels`` — the codebook: float32 [R, L] for k-means, the base levels [L] for the
  scaled codebooks (a row's levels are ``base * scale``);

and every other parameter / buffer as a float tensor under its own name. A weight stored
``[in, out]`` (GPT-2's ``Conv1D``) is encoded as quantized, ``[out, in]``, with
``stored_transposed``; a weight tied to others (an ``lm_head`` sharing the embedding) is
written once and lists them under ``tied``. A JSON manifest
(format tag, version, the config and per layer: spec, shape, dtype, granularity, axis,
group size, rows, packing) is stored in the safetensors metadata under ``manifest``
(:func:`read_manifest`; any safetensors reader shows it). :func:`load_quantized` decodes
the file back to exactly the fake-quantized weights of :func:`quantviz.core.quantize`.

One file, written atomically (temporary file + rename): whatever kills the writer, a
reader sees the previous export or the new one, never a weights file with another
export's manifest. Earlier versions also wrote the manifest to a sidecar
``<name>.manifest.json``; two files cannot be replaced together atomically (a SIGKILL
between the two renames left pairs from different exports), so the sidecar is no longer
written, and a sidecar of ours left by an earlier export is deleted before the new file is
put in place (old file without sidecar, then new file: each state is consistent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core.spec import ModelConfig
from quantviz.io.atomic import atomic_path
from quantviz.io.config import parse_json_bounded, read_text_bounded

if TYPE_CHECKING:
    from quantviz.io.exporters import ExportResult
    from quantviz.model.handle import ModelHandle

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "decode_layer",
    "encode_layer",
    "export_safetensors",
    "load_quantized",
    "pack",
    "unpack",
]

MANIFEST_FORMAT = "quantviz-quantized-weights"
MANIFEST_VERSION = 1
_INT16_BIAS = 32768
_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where earlier versions wrote a sidecar manifest (``model.manifest.json``)."""
    p = Path(path)
    return p.with_name(p.stem + ".manifest.json")


def _drop_stale_sidecar(path: Path) -> None:
    """Delete an earlier export's sidecar manifest next to ``path`` (only one of ours)."""
    side = sidecar_path(path)
    if side.is_symlink() or not side.is_file():
        return
    try:
        doc = parse_json_bounded(read_text_bounded(side, "manifest"))
    except (OSError, ValueError):
        return  # not ours to delete
    if isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT:
        side.unlink(missing_ok=True)


# -- packing ---------------------------------------------------------------------------------
def packing_for(bits: int) -> str:
    """Storage of unsigned codes of ``bits`` bits: ``uint4x2``, ``uint8`` or ``int16``."""
    if bits <= 4:
        return "uint4x2"
    return "uint8" if bits <= 8 else "int16"


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Flat unsigned codes (int64, in ``[0, 2^bits)``) -> the stored 1-D tensor."""
    flat = codes.reshape(-1)
    p = packing_for(bits)
    if p == "int16":
        return (flat - _INT16_BIAS).to(torch.int16)
    u = flat.to(torch.uint8)
    if p == "uint8":
        return u
    if u.numel() % 2:
        u = torch.cat([u, u.new_zeros(1)])
    return u[0::2] | (u[1::2] << 4)


def unpack(stored: torch.Tensor, packing: str, count: int) -> torch.Tensor:
    """The inverse of :func:`pack`: ``count`` unsigned codes as int64."""
    if packing == "int16":
        return stored.to(torch.int64) + _INT16_BIAS
    if packing == "uint8":
        return stored.to(torch.int64)
    if packing != "uint4x2":
        raise ValueError(f"packing: unknown {packing!r}")
    s = stored.to(torch.int64)
    out = torch.stack([s & 0xF, s >> 4], dim=1).reshape(-1)
    return out[:count]


# -- encoding one layer -----------------------------------------------------------------------
def encode_layer(
    fqn: str, w: torch.Tensor, spec: Any
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Manifest entry and tensors (by part: codes, scale, zero_point, levels) of one weight."""
    from quantviz.core import quantize
    from quantviz.core.codes import codes_of, dequantize_codes

    r = quantize(w, spec)
    rv = r.row_view
    c = codes_of(r, w)  # the one codes primitive every exporter takes its codes from
    tensors: dict[str, torch.Tensor] = {}
    entry: dict[str, Any] = {
        "fqn": fqn,
        "spec": spec.to_dict(full=True),
        "shape": list(rv.shape),
        "dtype": str(w.dtype),
        "granularity": rv.granularity,
        "axis": rv.axis,
        "group_size": spec.group_size if rv.granularity == "per_group" else None,
        "rows": rv.rows,
        "row_len": rv.row_len,
    }
    unsigned = c.codes - c.qmin
    bits = max(1, (c.qmax - c.qmin).bit_length())
    entry.update(decode=c.kind, code_offset=c.qmin)
    if c.scale is not None:
        tensors["scale"] = c.scale.to(torch.float32).contiguous()
    if c.zero_point is not None:
        tensors["zero_point"] = c.zero_point.to(torch.int32).contiguous()
    if c.levels is not None:
        tensors["levels"] = c.levels.to(torch.float32).contiguous()
    if not torch.equal(dequantize_codes(c), r.dequantized):  # pragma: no cover - a bug
        raise ValueError(f"layer {fqn}: the integer codes do not reproduce the quantized weight")
    entry["codes"] = {"bits": bits, "packing": packing_for(bits), "count": int(unsigned.numel())}
    tensors["codes"] = pack(unsigned, bits)
    return entry, tensors


def export_safetensors(
    handle: ModelHandle, config: ModelConfig, path: str | os.PathLike[str], *, strict: bool = False
) -> ExportResult:
    """Write the quantized weights of ``handle`` under ``config`` (and the manifest)."""
    from safetensors.torch import save

    from quantviz.io.config import config_to_dict
    from quantviz.io.exporters import ExportResult

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in handle.module.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    layers: dict[str, Any] = {}
    for lay in handle.layers:
        spec = config.resolve(lay.fqn).weight
        if spec is None:
            continue
        pname = lay.param_name
        w = handle.quant_weight(lay.fqn).detach().cpu()
        try:
            entry, tensors = encode_layer(lay.fqn, w, spec)
        except ValueError as exc:
            raise ValueError(f"layer {lay.fqn}: {exc}") from None
        if lay.channel_axis == 1:  # stored [in, out] (GPT-2's Conv1D): codes are [out, in]
            entry["stored_transposed"] = True
        if lay.tied:
            entry["tied"] = list(lay.tied)
        entry["tensors"] = {}
        for part, t in tensors.items():
            name = f"{pname}:{part}"
            out[name] = t
            entry["tensors"][part] = name
        layers[pname] = entry
        state.pop(pname, None)
        for alias in lay.tied:  # the same weight under another name: written once
            state.pop(alias, None)
    floats = []
    for name, t in state.items():
        out[name] = t.clone().contiguous()
        floats.append(name)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "model": handle.source,
        "config": config_to_dict(config),
        "layers": layers,
        "float_tensors": floats,
    }
    text = json.dumps(manifest, indent=2, allow_nan=False)
    data = save(out, metadata={"format": MANIFEST_FORMAT, "manifest": text})
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        _drop_stale_sidecar(path)  # before the rename: the old file alone is consistent
    return ExportResult(
        "safetensors",
        [path],
        details={"quantized_layers": len(layers), "bytes": len(data)},
    )


# -- reading back ---------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest stored in a quantviz safetensors file (ValueError naming the file)."""
    from safetensors import safe_open

    name = str(path)
    try:
        with safe_open(name, framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{name}: not a safetensors file ({exc})") from None
    if meta.get("format") != MANIFEST_FORMAT or "manifest" not in meta:
        raise ValueError(f"{name}: not a quantviz export (no {MANIFEST_FORMAT} manifest)")
    try:
        manifest = parse_json_bounded(meta["manifest"])
    except ValueError as exc:
        raise ValueError(f"{name}: manifest: invalid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{name}: manifest: must be a JSON object")
    version = manifest.get("version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ValueError(
            f"{name}: manifest version {version!r} is newer than this quantviz "
            f"(reads up to {MANIFEST_VERSION})"
        )
    return manifest


def decode_layer(entry: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The fake-quantized weight of one manifest entry (``tensors`` by part name)."""
    from quantviz.core.quantizers.base import RowView

    shape = tuple(entry["shape"])
    rv = RowView(shape, entry["granularity"], entry["axis"], entry["rows"], entry["row_len"])
    c = entry["codes"]
    u = unpack(tensors["codes"], c["packing"], c["count"]).reshape(rv.rows, rv.row_len)
    kind = entry["decode"]
    if kind == "affine":
        scale = tensors["scale"].to(torch.float32).reshape(-1, 1)
        zp = tensors["zero_point"].to(torch.int64).reshape(-1, 1)
        rows = (u + int(entry["code_offset"]) - zp).to(torch.float32) * scale
    else:
        if kind == "scaled_codebook":
            base = tensors["levels"].to(torch.float32)
            levels = base[None, :] * tensors["scale"].to(torch.float32)[:, None]
        elif kind == "codebook":
            levels = tensors["levels"].to(torch.float32)
        else:
            raise ValueError(f"decode: unknown {kind!r}")
        if levels.shape[0] == 1 and rv.rows != 1:
            levels = levels.expand(rv.rows, -1)
        rows = torch.gather(levels, 1, u)
    out = rv.from_rows(rows)
    dtype = _DTYPES.get(entry.get("dtype", "torch.float32"), torch.float32)
    return out if out.dtype == dtype else out.to(dtype)


def load_quantized(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an export back: param / buffer name -> tensor (quantized ones fake-quantized)."""
    from safetensors.torch import load_file

    manifest = read_manifest(path)
    raw = load_file(str(path))
    out: dict[str, torch.Tensor] = {}
    for pname, entry in manifest["layers"].items():
        try:
            parts = {part: raw[name] for part, name in entry["tensors"].items()}
            w = decode_layer(entry, parts)
            if entry.get("stored_transposed"):
                w = w.t().contiguous()
            out[pname] = w
            for alias in entry.get("tied", []):
                out[str(alias)] = w
        except (KeyError, RuntimeError) as exc:
            raise ValueError(f"{path}: layers.{pname}: cannot decode ({exc})") from None
    for name in manifest.get("float_tensors", []):
        if name not in raw:
            raise ValueError(f"{path}: float_tensors: {name!r} missing from the file")
        out[name] = raw[name]
    return out
