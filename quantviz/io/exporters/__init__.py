"""Exporters: one quantization decision written for the tools that deploy it (no Qt).

:func:`export` dispatches by format name; every writer is atomic (temporary file + rename,
see :mod:`quantviz.io.atomic`): a failure leaves no file behind. A layer scheme a format
cannot express is never dropped silently: it is listed by layer name in
:attr:`ExportResult.unsupported`, and ``strict=True`` turns any such layer into a
``ValueError`` before anything is written.

=============  ===============================================================================
format         what is written
=============  ===============================================================================
json, yaml     the quantviz config file (:func:`quantviz.io.save_config`)
safetensors    integer codes (packed), scales, zero points, codebooks + a JSON manifest
               (:mod:`.safetensors_fmt`, read back with :func:`load_quantized`)
onnx           the model with QuantizeLinear/DequantizeLinear pairs (:mod:`.onnx_fmt`)
aimet          AIMET 0.6.1 encodings JSON (:mod:`.aimet`)
html           a self-contained report (:mod:`.report`)
=============  ===============================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantviz.core.spec import ModelConfig

if TYPE_CHECKING:
    from quantviz.eval.results import EvalResult
    from quantviz.eval.transforms import Transformed
    from quantviz.model.capture import LayerStats
    from quantviz.model.handle import ModelHandle

__all__ = ["FORMATS", "SUFFIXES", "ExportResult", "export", "load_quantized"]

#: format name -> accepted file suffixes (the first is the default)
SUFFIXES: dict[str, tuple[str, ...]] = {
    "json": (".json",),
    "yaml": (".yaml", ".yml"),
    "safetensors": (".safetensors",),
    "onnx": (".onnx",),
    "aimet": (".encodings", ".json"),
    "html": (".html", ".htm"),
}
FORMATS = tuple(SUFFIXES)


@dataclass
class ExportResult:
    """What :func:`export` wrote.

    ``paths`` are the files written (one per format today: safetensors keeps its manifest
    in the file's metadata). ``unsupported`` lists ``(layer fqn, reason)`` for every layer
    whose scheme the format cannot express (how it was written instead is in the reason).
    ``details`` holds format-specific facts (e.g. the ONNX opset).
    """

    format: str
    paths: list[Path]
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.paths[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI prints it with ``--json``)."""
        return {
            "format": self.format,
            "output": str(self.path),
            "files": [str(p) for p in self.paths],
            "unsupported": [{"layer": f, "reason": r} for f, r in self.unsupported],
            **self.details,
        }


def check_strict(fmt: str, unsupported: Sequence[tuple[str, str]], strict: bool) -> None:
    """Raise ``ValueError`` listing ``unsupported`` layers when ``strict``."""
    if strict and unsupported:
        listing = "; ".join(f"{f}: {r}" for f, r in unsupported)
        raise ValueError(
            f"{fmt} export: {len(unsupported)} layer(s) cannot be expressed: {listing}"
        )


def _check_suffix(fmt: str, path: Path) -> None:
    ok = SUFFIXES[fmt]
    if path.suffix.lower() not in ok:
        raise ValueError(f"{path}: a {fmt} export needs a {'/'.join(ok)} file name")


def export(
    handle: ModelHandle,
    config: ModelConfig,
    fmt: str,
    path: str | os.PathLike[str],
    *,
    stats: Mapping[str, LayerStats] | None = None,
    results: Sequence[EvalResult] | None = None,
    images: Mapping[str, bytes] | None = None,
    strict: bool = False,
    state: Transformed | None = None,
) -> ExportResult:
    """Write ``config`` applied to ``handle``'s model as ``fmt`` to ``path`` (atomically).

    A config with transforms or AdaRound / GPTQ rounding needs ``state`` (from
    :func:`quantviz.eval.transforms.prepare_transforms`) for the weight formats
    (safetensors, onnx, aimet): they are written from the transformed (and rounded) weights.
    What a format cannot carry is listed in ``unsupported`` by name — safetensors and AIMET
    hold weights only, so an operation a transform inserted (smoothquant's input scale in
    front of a layer without a norm, hadamard's online rotation, a folded BatchNorm run as
    the identity, a bias added to a layer that has none) is named there; ONNX carries them
    as graph operations. json / yaml write the transforms into the config.

    ``stats`` (fqn -> calibration statistics) is needed for static activation specs in the
    onnx and aimet formats; ``results`` (EvalResults, the chosen one first or named like the
    config) and ``images`` (name -> PNG bytes) feed the html report. ``strict`` refuses —
    with a ``ValueError`` naming every layer, before anything is written — when a layer's
    scheme cannot be expressed in ``fmt``. Bad input (unknown format, wrong suffix, override
    keys matching no layer) raises ``ValueError``; so does a failed write (``cannot write``),
    except the ``OSError`` subclasses that already name the path (missing directory,
    permission denied).
    """
    from quantviz.eval.apply import check_config

    if fmt not in SUFFIXES:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    _check_suffix(fmt, path)
    check_config(handle, config)
    if fmt in ("safetensors", "onnx", "aimet"):
        from quantviz.eval.transforms import needs_transforms

        if needs_transforms(handle, config):
            if state is None:
                what = ", ".join(config.transform_names) or "AdaRound / GPTQ rounding"
                raise ValueError(
                    f"{fmt} export: the config has {what}: compute them first "
                    "(quantviz.eval.transforms.prepare_transforms, or give --data to the CLI)"
                )
            return _export_transformed(
                handle, config, fmt, path, stats, results, images, strict, state
            )
    try:
        return _dispatch(handle, config, fmt, path, stats, results, images, strict)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def _not_carried(handle: ModelHandle, fmt: str, state: Transformed) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if fmt == "onnx":
        return out
    for item in state.inserted:
        name, _, what = item.partition(": ")
        out.append((name, f"{what}: a {fmt} file holds weights only, not this operation"))
    for fqn in state.extra_bias:
        out.append((fqn, f"a bias added by the transforms: the layer has no bias in a {fmt} file"))
    return out


def _export_transformed(
    handle: ModelHandle,
    config: ModelConfig,
    fmt: str,
    path: Path,
    stats: Mapping[str, LayerStats] | None,
    results: Sequence[EvalResult] | None,
    images: Mapping[str, bytes] | None,
    strict: bool,
    state: Transformed,
) -> ExportResult:
    """The weight formats written with the transformed (and rounded) weights swapped in."""
    import torch

    from quantviz.core import quantize
    from quantviz.core.quantizers.base import row_view
    from quantviz.eval.transforms import transformed
    from quantviz.eval.transforms.rounding import elementwise_grid

    missing = _not_carried(handle, fmt, state)
    # a rounded weight is written as itself with each row's extremes (the elements that
    # fix a min/max grid, which AdaRound / GPTQ leave at their nearest level) at their float
    # values: the format's quantizer then fits the same grid and finds the same codes
    carried: dict[str, torch.Tensor] = {}
    for (fqn, spec), dq in state.rounded.items():
        if config.resolve(fqn).weight != spec:
            continue
        w = state.weight(handle, fqn)
        near = spec.with_(rounding="nearest")
        rv = row_view(tuple(w.shape), spec)
        xr = rv.to_rows(w.detach())
        lo = rv.from_rows(xr.amin(1, keepdim=True).expand_as(xr)).to(dq.dtype)
        hi = rv.from_rows(xr.amax(1, keepdim=True).expand_as(xr)).to(dq.dtype)
        inside = torch.minimum(torch.maximum(dq, lo), hi)  # a level past the row's extremes
        w_out = torch.where(elementwise_grid(w, spec).anchor, w, inside)
        again = quantize(w_out, near, metrics=False).dequantized
        err = float((again.to(torch.float64) - dq.to(torch.float64)).abs().max())
        if err > 0:
            missing.append(
                (
                    fqn,
                    f"rounding {spec.rounding}: the {fmt} file re-fits the grid to the "
                    f"weight ({spec.calibration} calibration); the written weight moves by "
                    f"{err:.3g}",
                )
            )
        carried[fqn] = w_out
    check_strict(fmt, missing, strict)
    swap: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    with transformed(handle, state):
        try:
            for fqn, w_out in carried.items():
                p = handle.weight(fqn)
                swap.append((p, p.data))  # type: ignore[arg-type]
                p.data = w_out
            res = _dispatch(handle, config, fmt, path, stats, results, images, strict)
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise
            raise ValueError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        finally:
            for p, orig in reversed(swap):
                p.data = orig
    res.unsupported.extend(missing)
    res.details["transforms"] = list(config.transform_names)
    return res


def _dispatch(
    handle: ModelHandle,
    config: ModelConfig,
    fmt: str,
    path: Path,
    stats: Mapping[str, LayerStats] | None,
    results: Sequence[EvalResult] | None,
    images: Mapping[str, bytes] | None,
    strict: bool,
) -> ExportResult:
    if fmt in ("json", "yaml"):
        from quantviz.io.config import save_config

        cfg = config if config.model else replace(config, model=handle.source)
        save_config(cfg, path)  # a ConfigError (ValueError) names the file if it fails
        return ExportResult(fmt, [path])
    if fmt == "safetensors":
        from quantviz.io.exporters.safetensors_fmt import export_safetensors

        return export_safetensors(handle, config, path, strict=strict)
    if fmt == "onnx":
        from quantviz.io.exporters.onnx_fmt import export_onnx

        return export_onnx(handle, config, path, stats=stats, strict=strict)
    if fmt == "aimet":
        from quantviz.io.exporters.aimet import export_aimet

        return export_aimet(handle, config, path, stats=stats, strict=strict)
    from quantviz.io.exporters.report import export_report

    return export_report(handle, config, path, results=results, images=images)


def load_quantized(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a quantviz safetensors export back: param name -> fake-quantized tensor."""
    from quantviz.io.exporters.safetensors_fmt import load_quantized as _load

    return _load(path)
