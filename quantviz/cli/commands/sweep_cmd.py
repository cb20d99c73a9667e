"""``quantviz sweep``: every layer at each bit-width (accuracy vs memory)."""

from __future__ import annotations

import argparse
from typing import Any

from quantviz.cli.commands.common import cluster_of, load_model_and_data, reporter
from quantviz.cli.errors import where
from quantviz.cli.output import emit, pct, result_dict
from quantviz.cli.parser import UsageError
from quantviz.cli.progress import drive
from quantviz.core.units import human_bytes

__all__ = ["run"]


def run(args: argparse.Namespace, config: Any, started: float) -> int:
    with cluster_of(args) as cluster:
        return _run(args, config, cluster)


def _run(args: argparse.Namespace, config: Any, cluster: Any) -> int:
    from quantviz.eval import uniform_sweep
    from quantviz.eval.sweeps import DEFAULT_SPEC, parse_bits

    bits = parse_bits(args.bits, field_name="--bits")
    spec, act = DEFAULT_SPEC, None
    transforms = config.transforms if config is not None else ()
    if config is not None:
        if config.default.weight is None:
            raise UsageError(f"{args.config}: default.weight is null; a sweep needs a scheme")
        spec, act = config.default.weight, config.default.activation
    methods = getattr(args, "methods", None)
    if methods is not None:
        if args.transforms is not None:
            raise UsageError("--methods: each method names its transforms; drop --transforms")
        from quantviz.core.methods import parse_methods

        # a transform written without brackets takes the config's parameters
        methods = parse_methods(methods, "--methods", configured=transforms)
        handle, data = load_model_and_data(args)
        return _run_methods(args, handle, data, bits, spec, act, methods, cluster)
    handle, data = load_model_and_data(args)
    # every point's config is checked against the layers before the baseline pass runs
    from quantviz.core import LayerConfig, ModelConfig
    from quantviz.eval import check_config

    with where(args.config or "--bits"):
        for b in bits:
            cfg = ModelConfig(
                default=LayerConfig(weight=spec.with_(bits=b), activation=act),
                transforms=transforms,
            )
            check_config(handle, cfg)
    done: list[Any] = []
    gen = uniform_sweep(
        handle,
        data,
        bits,
        spec,
        activation=act,
        batch_size=args.batch_size,
        transforms=transforms,
        executor=cluster,
    )
    try:
        res = drive(gen, reporter(args, "sweep"), on_point=lambda ev: done.append(ev.result))
    except KeyboardInterrupt:
        _partial(args, data, done, len(bits))
        raise
    if res.errors and not res.points:
        raise ValueError(f"every point failed; the first: {res.errors[0]['error']}")
    doc = {"model": args.model, "data": data.name, **res.to_dict()}
    doc["points"] = [result_dict(p) for p in res.points]
    lines = _table(res, f"uniform sweep of {args.model}")
    emit(args, doc, "\n".join(lines))
    return 0


def _table(res: Any, title: str, width: int = 32) -> list[str]:
    front = {id(p) for p in res.front}
    lines = [
        f"{title}: {res.metric}, float {pct(res.metric, res.baseline)}",
        f"{'config':<{width}} {res.metric:>14} {'size':>10} {'x smaller':>9} {'KL':>9}  pareto",
    ]
    for p in res.points:
        kl = "-" if p.kl is None else f"{p.kl:.3g}"
        lines.append(
            f"{p.name:<{width}} {pct(p.metric, p.value):>14} {human_bytes(p.model_bytes):>10} "
            f"{p.compression:>9.2f} {kl:>9}  {'*' if id(p) in front else ''}"
        )
    for e in res.errors:
        lines.append(f"{e['name']:<{width}} failed: {e['error']}")
    return lines


def _run_methods(
    args: argparse.Namespace,
    handle: Any,
    data: Any,
    bits: Any,
    spec: Any,
    act: Any,
    methods: Any,
    cluster: Any,
) -> int:
    """One uniform sweep per method: a table each (in --json a series each) and the
    methods that do not apply, named with the reason."""
    from quantviz.eval.method_sweep import methods_sweep

    done: list[Any] = []
    gen = methods_sweep(
        handle,
        data,
        bits,
        spec,
        methods,
        activation=act,
        batch_size=args.batch_size,
        executor=cluster,
    )
    try:
        res = drive(gen, reporter(args, "sweep"), on_point=lambda ev: done.append(ev.result))
    except KeyboardInterrupt:
        _partial(args, data, done, len(bits) * len(methods))
        raise
    if not res.runs:
        why = "; ".join(f"{s.method.label}: {s.reason}" for s in res.skipped)
        raise ValueError(f"--methods: no method applies to {args.model} ({why})")
    doc = {"model": args.model, "data": data.name, **res.to_dict()}
    for (_, r), series in zip(res.runs, doc["series"], strict=True):
        series["points"] = [result_dict(p) for p in r.points]
    width = max([32] + [len(p.name) for _, r in res.runs for p in r.points])
    lines: list[str] = []
    for m, r in res.runs:
        lines += [*_table(r, f"{m.label}: uniform sweep of {args.model}", width), ""]
    for s in res.skipped:
        lines.append(f"{s.method.label}: skipped: {s.reason}")
    emit(args, doc, "\n".join(lines).rstrip())
    return 0


def _partial(args: argparse.Namespace, data: Any, done: list[Any], total: int) -> None:
    """The points finished before Ctrl-C, as the document (or table) a full run prints."""
    doc = {
        "model": args.model,
        "data": data.name,
        "kind": "uniform",
        "interrupted": True,
        "completed": len(done),
        "total": total,
        "metric": done[0].metric if done else None,
        "baseline": done[0].baseline if done else None,
        "points": [result_dict(p) for p in done],
    }
    lines = [f"interrupted: {len(done)} of {total} points finished"]
    lines += [f"{p.name:<32} {pct(p.metric, p.value):>14}" for p in done]
    emit(args, doc, "\n".join(lines))
