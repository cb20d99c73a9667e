"""``quantviz debug``: isolated and cumulative error at every layer's output."""

from __future__ import annotations

import argparse
import math
from typing import Any

from quantviz.cli.commands.common import load_model_and_data, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit
from quantviz.cli.progress import drive

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    from quantviz.core.defaults import DEFAULT_CONFIG, DEFAULT_NAME
    from quantviz.eval import check_config
    from quantviz.eval.debug import debug

    handle, data = load_model_and_data(args)
    if config is None:
        config, name = DEFAULT_CONFIG, DEFAULT_NAME
    else:
        name = args.config
    with where(args.config or "the default config"):
        check_config(handle, config)
    gen = debug(
        handle,
        data,
        config,
        batch_size=min(args.batch_size, 256),
        max_samples=args.max_samples,
        jump_db=args.jump_db,
    )
    res = drive(gen, reporter(args, "debug"))
    doc = {"model": args.model, "data": data.name, "config": name, **res.to_dict()}
    if args.export_model_explorer:
        from quantviz.io.model_explorer import node_ids, write_node_data

        with where(args.export_model_explorer):
            write_node_data(args.export_model_explorer, res, node_ids(handle), args.me_value)
        doc["model_explorer"] = {"path": args.export_model_explorer, "value": args.me_value}
    emit(args, doc, _table(args, res, name))
    return 0


def _db(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    return "inf" if v == math.inf else f"{v:.1f}"


def _table(args: argparse.Namespace, res: Any, name: str) -> str:
    o = res.output
    lines = [
        f"error propagation of {args.model} under {name} ({res.n_samples} samples)",
        f"{'layer':<24} {'scheme':<26} {'iso dB':>7} {'cum dB':>7} {'jump':>6} "
        f"{'iso cos':>8} {'cum cos':>8}  flag",
    ]
    for lay in res.layers:
        why = []
        if lay.jump:
            why.append("jump")
        if lay.worst_isolated:
            why.append("worst isolated")
        lines.append(
            f"{lay.fqn:<24} {lay.scheme:<26} {_db(lay.isolated.sqnr_db):>7} "
            f"{_db(lay.cumulative.sqnr_db):>7} {_db(lay.jump_db):>6} "
            f"{lay.isolated.cosine:>8.4f} {lay.cumulative.cosine:>8.4f}  "
            + ("<< " + ", ".join(why) if why else "")
        )
    lines.append(
        f"output: KL {o.kl:.4g}  SQNR {_db(o.sqnr_db)} dB  cosine {o.cosine:.4f}  "
        f"top-1 agreement {100 * o.top1_agreement:.1f}%"
    )
    lines.append(
        f"flagged: cumulative SQNR drops > {res.jump_threshold_db:g} dB vs the previous layer "
        f"(jump) or isolated SQNR > {res.outlier_db:g} dB below the median (worst isolated)"
    )
    if args.export_model_explorer:
        lines.append(f"Model Explorer node data: {args.export_model_explorer}")
    return "\n".join(lines)
