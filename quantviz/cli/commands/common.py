"""What the subcommands share: opening the model and data, the progress reporter."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quantviz.cli.errors import where
from quantviz.cli.progress import ProgressReporter

__all__ = ["cluster_of", "load_model_and_data", "open_model", "reporter"]


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


@contextmanager
def cluster_of(args: argparse.Namespace) -> Iterator[Any]:
    """The :class:`quantviz.eval.cluster.Cluster` of ``--cluster``, connected (None without
    the option); closed (a ``local`` Ray shut down) when the block ends. An address that
    cannot be reached fails here, before the model is opened."""
    address = getattr(args, "cluster", None)
    if not address:
        yield None
        return
    from quantviz.eval.cluster import Cluster

    if not args.no_progress:
        what = "starting a local Ray" if address == "local" else f"connecting to {address}"
        print(f"quantviz: {what}…", file=sys.stderr, flush=True)
    cluster = Cluster(address).connect()
    try:
        if not args.no_progress:
            print(f"quantviz: cluster: {cluster.slots} task slots", file=sys.stderr, flush=True)
        yield cluster
    finally:
        cluster.close()
