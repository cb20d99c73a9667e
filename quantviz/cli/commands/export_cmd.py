"""``quantviz export``: write a config for a deployment format (see quantviz.io.exporters)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from quantviz.cli.commands.common import open_model, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit
from quantviz.cli.progress import drive

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    from quantviz.io.exporters import export
    from quantviz.io.importing import import_config

    out = Path(args.output)
    handle = open_model(args)
    with where(args.config):
        config = import_config(args.config, handle)
    if args.transforms is not None:
        config = config.with_transforms(args.transforms)
    state = _transformed_state(args, handle, config)
    stats, results = _export_inputs(args, handle, config, state)
    if args.format in ("json", "yaml"):
        config = replace(config, model=args.model)
    with where(str(out)):
        res = export(
            handle,
            config,
            args.format,
            out,
            stats=stats,
            results=results,
            strict=args.strict,
            state=state,
        )
    doc = {"model": args.model, **res.to_dict()}
    lines = [f"wrote {p}" for p in res.paths]
    for fqn, why in res.unsupported:
        lines.append(f"unsupported: {fqn}: {why}")
    emit(args, doc, "\n".join(lines))
    return 0


def _transformed_state(args: argparse.Namespace, handle: Any, config: Any) -> Any:
    """The transforms / rounding of ``config`` computed on the calibration data, for the
    weight formats (None when there are none or the format writes the config)."""
    from quantviz.eval.transforms import needs_transforms, prepare_transforms

    if args.format not in ("safetensors", "onnx", "aimet"):
        return None
    if not needs_transforms(handle, config):
        return None
    from quantviz.data import load_data

    with where(args.data or (handle.default_data and f"data {handle.default_data}")):
        data = load_data(args.data, handle)
    with where(args.config):
        gen = prepare_transforms(handle, config, data.calib_x, batch_size=args.batch_size)
        return drive(gen, reporter(args, "transform"))


def _export_inputs(
    args: argparse.Namespace, handle: Any, config: Any, state: Any = None
) -> tuple[Any, Any]:
    """Calibration statistics (onnx/aimet with static activations) and results (html)."""
    from quantviz.eval import calibrate, check_config, evaluate, needs_calibration
    from quantviz.eval.transforms import transformed

    with where(args.config):
        check_config(handle, config)
    fmt = args.format
    static = needs_calibration(handle, config)
    if not ((fmt in ("onnx", "aimet") and static) or fmt == "html"):
        return None, None
    from quantviz.data import load_data

    with where(args.data or (handle.default_data and f"data {handle.default_data}")):
        data = load_data(args.data, handle, seq_len=getattr(args, "seq_len", None))
    stats: dict[str, Any] = {}
    if fmt != "html":
        with transformed(handle, state):  # the ranges of the transformed model
            gen = calibrate(handle, data, static, stats, batch_size=args.batch_size)
            return drive(gen, reporter(args, "calibrate")), None
    name = Path(args.config).stem
    gen = evaluate(handle, data, config, stats=stats, batch_size=args.batch_size, name=name)
    return None, [drive(gen, reporter(args, "eval"))]
