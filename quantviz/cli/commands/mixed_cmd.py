"""``quantviz mixed``: the per-layer schemes of least proxy cost under a budget."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.commands.common import open_model, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit, pct, result_dict
from quantviz.cli.progress import drive
from quantviz.core.units import human_bytes

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    from quantviz.core.mixed_spec import parse_budget, parse_choices
    from quantviz.eval.mixed_exact import cost_table, proxy_function

    schemes = parse_choices(args.choices)
    budget = parse_budget(args.budget)
    proxy_function(args.proxy)  # an unavailable proxy fails before the model loads
    handle = open_model(args)
    data = None
    if args.proxy != "mse" or args.evaluate or args.data:
        from quantviz.data import load_data

        with where(args.data or (handle.default_data and f"data {handle.default_data}")):
            data = load_data(args.data, handle)
    gen = cost_table(handle, data, schemes, args.proxy, batch_size=args.batch_size)
    table = drive(gen, reporter(args, f"proxy {args.proxy}"))
    sol = table.solve(budget, args.solver)
    doc: dict[str, Any] = {"model": args.model, **table.to_dict(sol, args.solver)}
    if data is not None:
        doc["data"] = data.name
    lines = [
        f"mixed precision of {args.model}: proxy {args.proxy}, solver {args.solver}, "
        f"budget {budget.text}"
        + (f" = {human_bytes(sol.budget_bytes)}" if sol.budget_bytes is not None else ""),
        f"model {human_bytes(sol.model_bytes)} of {human_bytes(table.float_bytes)} float "
        f"(fixed {human_bytes(table.fixed_bytes)}), "
        f"{8 * sol.weight_bytes / max(table.weights, 1):.3f} bits per weight, "
        f"objective {sol.objective:.6g}",
        f"{'layer':<28} {'scheme':<12} {'bytes':>10} {'cost':>12}",
    ]
    for f in table.fqns:
        c = next(c for c in table.layer_candidates(f) if c.label == sol.assignment[f])
        lines.append(f"{f:<28} {c.label:<12} {c.bytes:>10.0f} {table.cost(c):>12.4g}")
    if args.evaluate:
        from quantviz.eval import evaluate

        assert data is not None
        r = drive(
            evaluate(handle, data, sol.config, batch_size=args.batch_size, name="mixed"),
            reporter(args, "evaluate"),
        )
        doc["evaluation"] = result_dict(r)
        lines.append(
            f"evaluated: {r.metric} {pct(r.metric, r.value)} "
            f"(float {pct(r.metric, r.baseline)}), KL {r.kl if r.kl is not None else '-'}"
        )
    emit(args, doc, "\n".join(lines))
    return 0
