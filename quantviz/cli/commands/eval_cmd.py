"""``quantviz eval``: one configuration, its metric, size and per-layer table."""

from __future__ import annotations

import argparse
import time
from typing import Any

from quantviz.cli.commands.common import load_model_and_data, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit, result_dict, result_text
from quantviz.cli.progress import drive

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    """Evaluate ``config`` (``DEFAULT_CONFIG`` when None); ``started`` is when the command
    began: the time until evaluation starts is the document's ``load`` timing."""
    from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_NAME
    from quantviz.eval import check_config, evaluate

    handle, data = load_model_and_data(args)
    if config is None and handle.meta.get("file_config") is not None:
        # an ONNX file holding QDQ: evaluated as it was quantized (its scales read back)
        config, name = handle.meta["file_config"], "the file's QDQ configuration"
    elif config is None:
        config, name = DEFAULT_CONFIG, DEFAULT_NAME
    else:
        name = args.config
    with where(args.config or name):
        check_config(handle, config)
    load_seconds = time.perf_counter() - started
    gen = evaluate(handle, data, config, batch_size=args.batch_size, name=name)
    r = drive(gen, reporter(args, "eval"))
    # the document covers the whole command: loading (imports, model, data, checks) + stages
    r.timings = {"load": load_seconds, **r.timings}
    r.seconds = sum(r.timings.values())
    doc = {"model": args.model, "data": data.name, **result_dict(r)}
    emit(args, doc, result_text(r, args.model))
    return 0
