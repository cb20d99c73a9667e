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
    stats, results = _export_inputs(args, handle, config)
    if args.format in ("json", "yaml"):
        config = replace(config, model=args.model)
    with where(str(out)):
        res = export(
            handle, config, args.format, out, stats=stats, results=results, strict=args.strict
        )
    doc = {"model": args.model, **res.to_dict()}
    lines = [f"wrote {p}" for p in res.paths]
    for fqn, why in res.unsupported:
        lines.append(f"unsupported: {fqn}: {why}")
    emit(args, doc, "\n".join(lines))
    return 0


def _export_inputs(args: argparse.Namespace, handle: Any, config: Any) -> tuple[Any, Any]:
    """Calibration statistics (onnx/aimet with static activations) and results (html)."""
    from quantviz.eval import calibrate, check_config, evaluate, needs_calibration

    with where(args.config):
        check_config(handle, config)
    fmt = args.format
    static = needs_calibration(handle, config)
    if not ((fmt in ("onnx", "aimet") and static) or fmt == "html"):
        return None, None
    from quantviz.data import load_data

    with where(args.data or (handle.default_data and f"data {handle.default_data}")):
        data = load_data(args.data, handle)
    stats: dict[str, Any] = {}
    if fmt != "html":
        gen = calibrate(handle, data, static, stats, batch_size=args.batch_size)
        return drive(gen, reporter(args, "calibrate")), None
    name = Path(args.config).stem
    gen = evaluate(handle, data, config, stats=stats, batch_size=args.batch_size, name=name)
    return None, [drive(gen, reporter(args, "eval"))]
