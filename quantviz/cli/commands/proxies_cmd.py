"""``quantviz proxies``: sensitivity proxies per layer, ranked against the measured drop."""

from __future__ import annotations

import argparse
import math
from typing import Any

from quantviz.cli.commands.common import load_model_and_data, reporter
from quantviz.cli.output import emit, pct
from quantviz.cli.progress import drive

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    from quantviz.core import QuantSpec
    from quantviz.eval import proxies as px

    handle, data = load_model_and_data(args)
    spec = QuantSpec(bits=args.bits, granularity=args.granularity)
    cands = [(f, spec) for f in handle.fqns]
    gen = px.rank_proxies(
        handle,
        data,
        cands,
        args.proxy,
        batch_size=args.batch_size,
        options={"hessian": {"probes": args.probes}},
    )
    rep = drive(gen, reporter(args, "proxies"))
    doc = {"model": args.model, "data": data.name, "scheme": spec.short(), **rep.to_dict()}
    emit(args, doc, _table(args, rep, spec))
    return 0


def _rho(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:+.3f}"


def _table(args: argparse.Namespace, rep: Any, spec: Any) -> str:
    names = list(rep.values)
    lines = [
        f"sensitivity proxies of {args.model}, each layer alone at W{spec.short()} "
        f"(float {pct(rep.metric, rep.baseline)})",
        f"{'layer':<24} {'drop pts':>9} " + " ".join(f"{n:>12}" for n in names),
    ]
    for c in rep.by_drop():
        m = rep.measured[c]
        vals = " ".join(f"{rep.values[n][c]:>12.4g}" for n in names)
        lines.append(f"{c[0]:<24} {100 * m.drop:>9.2f} {vals}")
    lines.append(
        f"{'Spearman rho vs drop':<34} " + " ".join(f"{_rho(rep.spearman[n]):>12}" for n in names)
    )
    return "\n".join(lines)
