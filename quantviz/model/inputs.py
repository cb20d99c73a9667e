"""The example input of a model: from the caller, a ``.json`` sidecar, or the file itself.

The sidecar (``model.pt.json`` or ``model.json`` next to the file) may give ``input_shape``,
``input_dtype``, ``num_classes`` and ``default_data``. Its size and the example input it
asks for are bounded before anything is allocated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from quantviz.model.errors import InputShapeRequired, ModelLoadError
from quantviz.model.limits import claimed_bytes, too_big

__all__ = ["example_input", "parse_dtype", "read_sidecar"]

_SIDECAR_MAX = 1 << 20
_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "long": torch.int64,
    "int32": torch.int32,
}


def read_sidecar(path: Path) -> dict[str, Any]:
    """``model.pt.json`` or ``model.json`` next to the file, if present."""
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file() and cand != path:
            size = cand.stat().st_size
            if size > _SIDECAR_MAX:
                raise ModelLoadError(
                    f"{cand}: sidecar JSON of {size:,} bytes; a sidecar is a few lines "
                    f"(limit {_SIDECAR_MAX:,} bytes)"
                )
            try:
                data = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as exc:
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                raise ModelLoadError(f"{cand}: unreadable sidecar JSON ({why})") from None
            if not isinstance(data, dict):
                raise ModelLoadError(f"{cand}: sidecar must be a JSON object")
            nc = data.get("num_classes")
            if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
                raise ModelLoadError(f"{cand}: num_classes must be a positive integer, got {nc!r}")
            dd = data.get("default_data")
            if dd is not None and (not isinstance(dd, str) or not dd.strip()):
                raise ModelLoadError(
                    f"{cand}: default_data must be a data source string (a path or "
                    f"sample:NAME), got {dd!r}"
                )
            return data
    return {}


def parse_dtype(where: str, dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise ModelLoadError(
            f"{where}: input dtype must be one of {', '.join(sorted(_DTYPES))}, got {dtype!r}"
        ) from None


def example_input(
    path: Path,
    source: str,
    found: torch.Tensor | None,
    sidecar: Mapping[str, Any],
    input_shape: Sequence[int] | None,
    input_dtype: str | torch.dtype | None,
) -> torch.Tensor:
    shape: Sequence[int] | None = input_shape
    where = "input_shape"
    if shape is None and "input_shape" in sidecar:
        shape, where = sidecar["input_shape"], f"{path}.json: input_shape"
    if shape is None:
        if found is not None:
            one = found[:1] if found.dim() > 0 else found
            msg = too_big(
                f"{path}: the example input stored in the file, shape {tuple(one.shape)} "
                f"{one.dtype},",
                claimed_bytes(one.shape, one.element_size()),
            )
            if msg:  # a view can claim more than it stores (stride 0)
                raise ModelLoadError(msg)
            if one.layout != torch.strided:
                raise ModelLoadError(
                    f"{path}: the example input stored in the file is a {one.layout} tensor"
                )
            return one.clone() if found.dim() > 0 and found.shape[0] > 1 else found
        raise InputShapeRequired(path)
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ModelLoadError(f"{where}: must be a list of positive integers, got {shape!r}")
    dtype = parse_dtype(where, input_dtype or sidecar.get("input_dtype"))
    want: tuple[int, ...] = (1, *tuple(shape)[1:])
    itemsize = torch.empty((), dtype=dtype).element_size()
    msg = too_big(
        f"{where}: an example input of shape {want} {dtype}", claimed_bytes(want, itemsize)
    )
    if msg:
        raise ModelLoadError(msg)
    return torch.zeros(want, dtype=dtype)
