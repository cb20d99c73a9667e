"""What the subcommands share: opening the model and data, the progress reporter."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.errors import where
from quantviz.cli.progress import ProgressReporter

__all__ = ["load_model_and_data", "open_model", "reporter"]


def open_model(args: argparse.Namespace) -> Any:
    """The model of ``--model``; its example input from ``--input-shape``, the file, or one
    sample of ``--data``."""
    from quantviz.data import load_model_for_data
    from quantviz.eval import check_device

    check_device(args.device)
    with where(args.model):
        return load_model_for_data(
            args.model,
            getattr(args, "data", None),
            input_shape=getattr(args, "input_shape", None),
            trust=args.trust,
            device=args.device,
        )


def load_model_and_data(args: argparse.Namespace) -> tuple[Any, Any]:
    from quantviz.data import load_data

    handle = open_model(args)
    with where(args.data or (handle.default_data and f"data {handle.default_data}")):
        data = load_data(args.data, handle, seq_len=getattr(args, "seq_len", None))
    return handle, data


def reporter(args: argparse.Namespace, label: str) -> ProgressReporter:
    return ProgressReporter(label, enabled=not args.no_progress)
