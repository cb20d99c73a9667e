"""What the subcommands share: opening the model and data, the progress reporter."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.errors import where
from quantviz.cli.progress import ProgressReporter

__all__ = ["load_model_and_data", "open_model", "reporter"]


def open_model(args: argparse.Namespace) -> Any:
    from quantviz.eval import check_device
    from quantviz.model import load_model

    check_device(args.device)
    with where(args.model):
        return load_model(args.model, trust=args.trust, device=args.device)


def load_model_and_data(args: argparse.Namespace) -> tuple[Any, Any]:
    from quantviz.data import load_data

    handle = open_model(args)
    with where(args.data or (handle.default_data and f"data {handle.default_data}")):
        data = load_data(args.data, handle)
    return handle, data


def reporter(args: argparse.Namespace, label: str) -> ProgressReporter:
    return ProgressReporter(label, enabled=not args.no_progress)
