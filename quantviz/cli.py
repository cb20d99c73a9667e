"""The ``quantviz`` command: the app, or a headless subcommand.

::

    quantviz [MODEL] [--data FILE]                 # the app; the bundled sample when no MODEL
    quantviz eval   --model M [--data D] [--config C] [--trust] [--device cpu|cuda] [--json]
    quantviz sweep  --model M [--data D] [--bits 2,3,4,6,8] [--config C] [--json]
    quantviz sensitivity --model M [--data D] [--bits 4] [--json]
    quantviz export --model M --config C --format json|yaml|safetensors|onnx|aimet|html -o OUT
                    [--data D] [--strict]

Headless subcommands print one JSON document on stdout with ``--json`` (a readable summary
otherwise) and progress bars on stderr. Exit status: 0 on success, 2 on bad input with a
one-line ``quantviz: error: ...`` message (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("eval", "sweep", "sensitivity", "export")
EXPORT_FORMATS = ("json", "yaml", "safetensors", "onnx", "aimet", "html")
PROG = "quantviz"


class UsageError(ValueError):
    """Bad command-line usage (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and never exits on its own."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _common(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    p.add_argument(
        "--model",
        "-m",
        required=model_required,
        metavar="M",
        help="model source: sample:NAME, a TorchScript / .pt2 / state_dict file",
    )
    p.add_argument(
        "--data",
        "-d",
        metavar="D",
        help="evaluation data: sample:digits or a .npz/.pt with x (and y)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="allow unpickling a whole nn.Module (runs code from the file)",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the headless subcommands (``quantviz --help`` shows it)."""
    parser = _Parser(
        prog=PROG,
        description="See what quantization does to a neural network. Without a subcommand, "
        "`quantviz [MODEL] [--data FILE]` opens the app.",
    )
    from quantviz import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{eval,sweep,sensitivity,export}", parser_class=_Parser
    )
    p = sub.add_parser("eval", help="evaluate one configuration")
    _common(p)
    p.add_argument(
        "--config",
        "-c",
        metavar="C",
        help="config file (.json / .yaml); default: 8-bit per-channel weights, float activations",
    )
    p = sub.add_parser("sweep", help="uniform bit-width sweep (accuracy vs memory)")
    _common(p)
    p.add_argument("--bits", default="2,3,4,5,6,8", help="comma-separated bit-widths")
    p.add_argument(
        "--config", "-c", metavar="C", help="config whose default weight/activation scheme is swept"
    )
    p = sub.add_parser("sensitivity", help="per-layer sensitivity (each layer alone quantized)")
    _common(p)
    p.add_argument("--bits", default="4", help="bit-width(s), e.g. 4 or 3,4")
    p = sub.add_parser("export", help="write a config for deployment tools")
    _common(p)
    p.add_argument("--config", "-c", required=True, metavar="C")
    p.add_argument("--format", "-f", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--output", "-o", required=True, metavar="OUT")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 2, nothing written) if the format cannot express some layer's "
        "scheme; by default such layers are listed and written as the format allows",
    )
    return parser


def _gui_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Open the quantviz app (subcommands: "
        + ", ".join(SUBCOMMANDS)
        + "; see `quantviz eval --help`).",
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="model source (default: a sample)")
    p.add_argument("--data", "-d", metavar="FILE")
    p.add_argument("--debug", action="store_true")
    return p


# ---------------------------------------------------------------------------------------
# running generators with a progress bar
# ---------------------------------------------------------------------------------------
def _drive(gen: Any, args: argparse.Namespace, desc: str) -> Any:
    from tqdm import tqdm

    from quantviz.eval import Progress

    bar = tqdm(
        total=1000,
        desc=desc,
        file=sys.stderr,
        disable=args.no_progress,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        leave=False,
    )
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(ev, Progress):
                bar.n = max(bar.n, int(1000 * ev.fraction))  # monotonic
                stage = ev.stage if ev.points == 1 else f"{ev.point + 1}/{ev.points} {ev.stage}"
                bar.set_postfix_str(stage, refresh=False)
                bar.refresh()
    finally:
        bar.close()
        gen.close()


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from quantviz.data import load_data
    from quantviz.eval import check_device
    from quantviz.model import load_model

    check_device(args.device)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: must be >= 1, got {args.batch_size}")
    handle = load_model(args.model, trust=args.trust, device=args.device)
    data = load_data(args.data, handle)
    return handle, data


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        sys.stdout.write(text + "\n")


def _pct(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if metric in ("accuracy", "top1_agreement") else f"{v:.4g}"


def _size(n: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _result_text(r: Any, model: str) -> str:
    lines = [
        f"model        {model}",
        f"config       {r.name or 'given config'}",
        f"{r.metric:<12} {_pct(r.metric, r.value)}  (float: {_pct(r.metric, r.baseline)}, "
        f"drop {100 * r.drop:+.2f} pts)"
        if r.metric in ("accuracy", "top1_agreement")
        else f"{r.metric:<12} {r.value:.4g} (float {r.baseline:.4g})",
        f"agreement    {_pct('accuracy', r.top1_agreement)}   cosine {r.cosine:.5f}   "
        f"KL {r.kl:.3g}",
        f"size         {_size(r.model_bytes)} of {_size(r.float_bytes)} float "
        f"({r.compression:.2f}x smaller)",
        f"BOPs         {r.bops:.3g} per sample ({r.float_bops / max(r.bops, 1):.1f}x fewer)",
        f"time         {r.seconds:.2f} s (quantize {r.timings['quantize']:.2f}, "
        f"calibrate {r.timings['calibrate']:.2f}, forward {r.timings['forward']:.2f})",
        "",
        f"{'layer':<24} {'scheme':<28} {'bytes':>10} {'SQNR dB':>8}",
    ]
    for lay in r.layers:
        sq = lay["weight_sqnr_db"]
        sqs = "-" if sq is None else ("inf" if sq == float("inf") else f"{sq:.1f}")
        lines.append(f"{lay['fqn']:<24} {lay['scheme']:<28} {lay['bytes']:>10.0f} {sqs:>8}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------------------
def _default_config() -> Any:
    from quantviz.core import LayerConfig, ModelConfig, QuantSpec

    return ModelConfig(default=LayerConfig(weight=QuantSpec(bits=8, granularity="per_channel")))


def _cmd_eval(args: argparse.Namespace) -> int:
    from quantviz.eval import evaluate
    from quantviz.io import load_config

    config = load_config(args.config) if args.config else _default_config()
    handle, data = _load(args)
    name = args.config or "W8 per-channel (default)"
    r = _drive(evaluate(handle, data, config, batch_size=args.batch_size, name=name), args, "eval")
    doc = {"model": args.model, "data": data.name, **r.to_dict()}
    _emit(args, doc, _result_text(r, args.model))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from quantviz.eval import uniform_sweep
    from quantviz.eval.sweeps import DEFAULT_SPEC, parse_bits
    from quantviz.io import load_config

    bits = parse_bits(args.bits, field_name="--bits")
    spec, act = DEFAULT_SPEC, None
    if args.config:
        cfg = load_config(args.config)
        if cfg.default.weight is None:
            raise UsageError(f"{args.config}: default.weight is null; a sweep needs a scheme")
        spec, act = cfg.default.weight, cfg.default.activation
    handle, data = _load(args)
    res = _drive(
        uniform_sweep(handle, data, bits, spec, activation=act, batch_size=args.batch_size),
        args,
        "sweep",
    )
    doc = {"model": args.model, "data": data.name, **res.to_dict()}
    front = {id(p) for p in res.front}
    lines = [
        f"uniform sweep of {args.model}: {res.metric}, float {_pct(res.metric, res.baseline)}",
        f"{'config':<32} {res.metric:>14} {'size':>10} {'x smaller':>9} {'KL':>9}  pareto",
    ]
    for p in res.points:
        lines.append(
            f"{p.name:<32} {_pct(p.metric, p.value):>14} {_size(p.model_bytes):>10} "
            f"{p.compression:>9.2f} {p.kl:>9.3g}  {'*' if id(p) in front else ''}"
        )
    _emit(args, doc, "\n".join(lines))
    return 0


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from quantviz.eval import sensitivity
    from quantviz.eval.sweeps import parse_bits

    bits = parse_bits(args.bits, field_name="--bits")
    handle, data = _load(args)
    res = _drive(sensitivity(handle, data, bits, batch_size=args.batch_size), args, "sensitivity")
    doc = {"model": args.model, "data": data.name, **res.to_dict()}
    b = res.bits[0]
    lines = [
        f"per-layer sensitivity of {args.model}, each layer alone at "
        f"W{res.spec.with_(bits=b).short()} (float {_pct(res.metric, res.baseline)})",
        f"{'rank':>4} {'layer':<24} {res.metric:>14} {'drop pts':>9} {'KL':>10} {'KL rank':>7}",
    ]
    kl_rank = {f: i + 1 for i, f in enumerate(res.by_kl())}
    for i, f in enumerate(res.by_drop(), start=1):
        ls = res.layer(f)
        lines.append(
            f"{i:>4} {f:<24} {_pct(res.metric, ls.value[b]):>14} "
            f"{100 * res.drop(f):>9.2f} {ls.kl[b]:>10.3g} {kl_rank[f]:>7}"
        )
    _emit(args, doc, "\n".join(lines))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Write the config for one deployment format (see quantviz.io.exporters)."""
    from dataclasses import replace
    from pathlib import Path

    from quantviz.io.exporters import SUFFIXES, export
    from quantviz.io.importing import import_config

    out = Path(args.output)
    suffixes = SUFFIXES[args.format]
    if out.suffix.lower() not in suffixes:
        raise UsageError(f"-o {out}: a {args.format} export needs a {'/'.join(suffixes)} name")
    if out.is_dir():
        raise UsageError(f"-o {out}: is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: directory {out.parent} does not exist")
    from quantviz.eval import check_device
    from quantviz.model import load_model

    check_device(args.device)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: must be >= 1, got {args.batch_size}")
    handle = load_model(args.model, trust=args.trust, device=args.device)
    config = import_config(args.config, handle)
    stats, results = _export_inputs(args, handle, config)
    if args.format in ("json", "yaml"):
        config = replace(config, model=args.model)
    res = export(handle, config, args.format, out, stats=stats, results=results, strict=args.strict)
    doc = {"model": args.model, **res.to_dict()}
    lines = [f"wrote {p}" for p in res.paths]
    for fqn, why in res.unsupported:
        lines.append(f"unsupported: {fqn}: {why}")
    _emit(args, doc, "\n".join(lines))
    return 0


def _export_inputs(args: argparse.Namespace, handle: Any, config: Any) -> tuple[Any, Any]:
    """Calibration statistics (onnx/aimet with static activations) and results (html)."""
    from quantviz.eval import calibrate, evaluate, needs_calibration

    fmt = args.format
    static = needs_calibration(handle, config)
    if not ((fmt in ("onnx", "aimet") and static) or fmt == "html"):
        return None, None
    from quantviz.data import load_data

    data = load_data(args.data, handle)
    stats: dict[str, Any] = {}
    if fmt != "html":
        gen = calibrate(handle, data, static, stats, batch_size=args.batch_size)
        return _drive(gen, args, "calibrate"), None
    from pathlib import Path

    name = Path(args.config).stem
    gen = evaluate(handle, data, config, stats=stats, batch_size=args.batch_size, name=name)
    return None, [_drive(gen, args, "eval")]


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "eval": _cmd_eval,
    "sweep": _cmd_sweep,
    "sensitivity": _cmd_sensitivity,
    "export": _cmd_export,
}


def _run_gui(args: argparse.Namespace) -> int:
    try:
        from quantviz.gui.app import QtPlatformUnavailable, run
    except ImportError as exc:
        raise _GuiMissing(
            f"the app is not available ({exc}); install quantviz[gui], or use a headless "
            f"subcommand: {', '.join(SUBCOMMANDS)}"
        ) from exc
    try:
        return int(run(args.model, args.data) or 0)
    except QtPlatformUnavailable as exc:  # no display / missing system libraries
        raise _GuiMissing(str(exc)) from exc


class _GuiMissing(RuntimeError):
    pass


def _bad_input_types() -> tuple[type[BaseException], ...]:
    # ConfigError, ModelLoadError and DataError are ValueErrors
    return (
        ValueError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
        KeyError,
        _GuiMissing,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    first = next((a for a in argv if not a.startswith("-")), None)
    try:
        if first in SUBCOMMANDS or (first is None and {"-h", "--help", "--version"} & set(argv)):
            args = build_parser().parse_args(argv)
            if args.command is None:  # pragma: no cover - argparse handles --help itself
                return _run_gui(_gui_parser().parse_args([]))
            return _COMMANDS[args.command](args)
        return _run_gui(_gui_parser().parse_args(argv))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except _bad_input_types() as exc:
        if debug:
            raise
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        msg = " ".join(msg.split()) or type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
