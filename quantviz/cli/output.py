"""What the subcommands print: one JSON document (``--json``) or a readable summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from quantviz.core.units import human_bytes

__all__ = ["emit", "pct", "result_dict", "result_text"]


def emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def pct(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if metric in ("accuracy", "top1_agreement") else f"{v:.4g}"


def result_dict(r: Any) -> dict[str, Any]:
    """``r.to_dict()`` plus its config in the config file format (``quantviz.io``)."""
    from quantviz.io.config import config_to_dict

    d = r.to_dict()
    if r.config is not None:
        d["config"] = config_to_dict(r.config)
    return d


def result_text(r: Any, model: str) -> str:
    if r.metric in ("accuracy", "top1_agreement"):
        metric = (
            f"{r.metric:<12} {pct(r.metric, r.value)}  (float: {pct(r.metric, r.baseline)}, "
            f"drop {100 * r.drop:+.2f} pts)"
        )
    elif r.metric == "perplexity":
        rel = 100 * r.drop / r.baseline if r.baseline else float("nan")
        metric = (
            f"{'perplexity':<12} {r.value:.4f}  (float: {r.baseline:.4f}, {rel:+.2f}%; "
            f"lower is better; {getattr(r, 'n_tokens', None) or 0} predicted tokens)"
        )
    else:
        metric = f"{r.metric:<12} {r.value:.4g} (float {r.baseline:.4g})"
    cos = "-" if r.cosine is None else f"{r.cosine:.5f}"
    kl = "-" if r.kl is None else f"{r.kl:.3g}"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items() if v >= 0.005)
    lines = [
        f"model        {model}",
        f"config       {r.name or 'given config'}",
        metric,
        f"agreement    {pct('accuracy', r.top1_agreement)}   cosine {cos}   KL {kl}",
        f"size         {human_bytes(r.model_bytes)} of {human_bytes(r.float_bytes)} float "
        f"({r.compression:.2f}x smaller)",
        f"BOPs         {r.bops:.3g} per sample ({r.float_bops / max(r.bops, 1):.1f}x fewer)",
        f"time         {r.seconds:.2f} s ({stages})",
        "",
        f"{'layer':<24} {'scheme':<28} {'bytes':>10} {'SQNR dB':>8}",
    ]
    for lay in r.layers:
        sq = lay["weight_sqnr_db"]
        sqs = "-" if sq is None else ("inf" if sq == float("inf") else f"{sq:.1f}")
        lines.append(f"{lay['fqn']:<24} {lay['scheme']:<28} {lay['bytes']:>10.0f} {sqs:>8}")
    return "\n".join(lines)
