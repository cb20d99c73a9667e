"""``quantviz sensitivity``: each layer alone quantized; Ctrl-C prints what was measured."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.commands.common import cluster_of, load_model_and_data, reporter
from quantviz.cli.output import emit, pct
from quantviz.cli.progress import drive

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    with cluster_of(args) as cluster:
        return _run(args, cluster)


def _run(args: argparse.Namespace, cluster: Any) -> int:
    from quantviz.eval import sensitivity
    from quantviz.eval.sweeps import DEFAULT_SPEC, parse_bits

    bits = parse_bits(args.bits, field_name="--bits")
    handle, data = load_model_and_data(args)
    done: list[Any] = []
    gen = sensitivity(
        handle,
        data,
        bits,
        DEFAULT_SPEC,
        batch_size=args.batch_size,
        transforms=args.transforms or (),
        executor=cluster,
    )
    try:
        res = drive(gen, reporter(args, "sensitivity"), on_point=done.append)
    except KeyboardInterrupt:
        res = _partial_result(handle, bits, DEFAULT_SPEC, done)
        doc = {
            "model": args.model,
            "data": data.name,
            "interrupted": True,
            "completed": len(done),
            "total": len(bits) * len(handle.fqns),
            **(res.to_dict() if res is not None else {"layers": []}),
        }
        head = f"interrupted: {len(done)} of {doc['total']} measurements finished"
        emit(args, doc, head + ("\n" + _table(args, res) if res is not None else ""))
        raise
    if res.errors and not res.layers:
        raise ValueError(f"every measurement failed; the first: {res.errors[0]['error']}")
    doc = {"model": args.model, "data": data.name, **res.to_dict()}
    text = _table(args, res)
    for e in res.errors:
        text += f"\n{e['name']}: failed: {e['error']}"
    emit(args, doc, text)
    return 0


def _partial_result(handle: Any, bits: tuple[int, ...], spec: Any, done: list[Any]) -> Any:
    """A SensitivityResult of what was measured before the interruption.

    :func:`quantviz.eval.sensitivity` measures width by width, layer by layer, in the
    model's layer order: ``PointDone.index`` ``i`` is layer ``i % n`` at ``bits[i // n]``.
    """
    from quantviz.eval.sweeps import LayerSensitivity, SensitivityResult

    if not done:
        return None
    fqns = handle.fqns
    by_fqn: dict[str, LayerSensitivity] = {}
    for ev in done:
        fqn, b = fqns[ev.index % len(fqns)], bits[ev.index // len(fqns)]
        r = ev.result
        ls = by_fqn.setdefault(fqn, LayerSensitivity(fqn, handle.layer(fqn).params))
        ls.value[b] = r.value
        ls.kl[b] = float(r.kl or 0.0)
        ls.sqnr_db[b] = next(lay["weight_sqnr_db"] for lay in r.layers if lay["fqn"] == fqn)
    # the layers measured at the first width (the rankings' width), with the widths every
    # one of them was measured at
    layers = [by_fqn[f] for f in fqns if f in by_fqn and bits[0] in by_fqn[f].kl]
    widths = tuple(b for b in bits if all(b in ls.kl for ls in layers))
    first = done[0].result
    return SensitivityResult(
        first.metric, first.baseline, widths, spec, layers, higher_is_better=first.higher_is_better
    )


def _table(args: argparse.Namespace, res: Any) -> str:
    b = res.bits[0]
    # accuracy drops in percentage points; perplexity rises as they are ("worse by")
    in_pts = res.metric in ("accuracy", "top1_agreement")
    drop_head = "drop pts" if in_pts else "worse by"
    lines = [
        f"per-layer sensitivity of {args.model}, each layer alone at "
        f"W{res.spec.with_(bits=b).short()} (float {pct(res.metric, res.baseline)})",
        f"{'rank':>4} {'layer':<24} {res.metric:>14} {drop_head:>9} {'KL':>10} {'KL rank':>7}",
    ]
    kl_rank = {f: i + 1 for i, f in enumerate(res.by_kl())}
    for i, f in enumerate(res.by_drop(), start=1):
        ls = res.layer(f)
        drop = f"{100 * res.drop(f):>9.2f}" if in_pts else f"{res.drop(f):>+9.4g}"
        lines.append(
            f"{i:>4} {f:<24} {pct(res.metric, ls.value[b]):>14} "
            f"{drop} {ls.kl[b]:>10.3g} {kl_rank[f]:>7}"
        )
    return "\n".join(lines)
