"""The argument parsers of ``quantviz`` (argparse; errors are one line, never an exit)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from quantviz.core.mixed_spec import DEFAULT_CHOICES
from quantviz.io.exporters import FORMATS as EXPORT_FORMATS

__all__ = [
    "EXPORT_FORMATS",
    "PROG",
    "SUBCOMMANDS",
    "UsageError",
    "add_cluster_option",
    "build_parser",
    "gui_parser",
]

SUBCOMMANDS = ("eval", "sweep", "sensitivity", "mixed", "export", "qat", "debug", "proxies")
PROG = "quantviz"


class UsageError(ValueError):
    """Bad command-line usage (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and never exits on its own."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def input_shape_arg(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` -> ``(1, 3, 224, 224)``; argparse reports a ValueError as bad usage."""
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return shape


def transforms_arg(text: str) -> tuple[object, ...]:
    """``cle,bias_correction``, ``smoothquant(alpha=0.8),hadamard`` (the form labels and
    ``--methods`` use, parsed by quantviz.core.methods) or ``smoothquant:alpha=0.8``
    (``none``: no transforms) -> validated ``(name, params)`` entries; argparse reports
    errors as usage."""
    from quantviz.core.methods import parse_method, split_top
    from quantviz.core.spec import check_transforms

    if text.strip().lower() == "none":
        return ()
    items: list[object] = []
    try:
        parts = [p.strip() for p in split_top(text, ",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--transforms: {e}") from None
    for i, part in enumerate(parts):
        if not part:
            raise argparse.ArgumentTypeError(f"empty transform name in {text!r}")
        if "(" in part:  # NAME(k=v, ...): a method of transforms only
            try:
                m = parse_method(part, f"--transforms[{i}]")
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
            if m.rounding != "nearest" or len(m.transforms) != 1:
                raise argparse.ArgumentTypeError(
                    f"--transforms[{i}]: {part!r} must be one transform (roundings go in "
                    "the config's rounding field)"
                )
            items.extend({n: dict(p)} for n, p in m.transforms)
            continue
        name, _, rest = part.partition(":")
        params: dict[str, float] = {}
        for kv in filter(None, rest.split(":")):
            k, eq, v = kv.partition("=")
            try:
                params[k] = int(v) if v.strip().lstrip("-").isdigit() else float(v)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{name}: parameter {kv!r} must be NAME=NUMBER"
                ) from None
            if not eq:
                raise argparse.ArgumentTypeError(f"{name}: parameter {kv!r} must be NAME=NUMBER")
        items.append({name: params} if params else name)
    try:
        return check_transforms(items)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def methods_arg(text: str) -> str:
    """``nearest,gptq,smoothquant(alpha=0.8)`` checked (quantviz.core.methods) and returned
    as written: the sweep parses it again with the config's transforms, whose parameters a
    transform written without brackets takes. argparse reports errors as usage."""
    from quantviz.core.methods import parse_methods

    try:
        parse_methods(text, "--methods")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cluster_address(text: str) -> str:
    """``local``, ``auto`` or ``ray://HOST:PORT`` (checked without importing Ray)."""
    import re

    t = text.strip()
    if t in ("local", "auto") or re.fullmatch(r"ray://[^\s/:]+:\d{1,5}/?", t):
        return t
    raise argparse.ArgumentTypeError(f"expected local, auto or ray://HOST:PORT, got {text!r}")


def add_cluster_option(p: argparse.ArgumentParser) -> None:
    """``--cluster``: every evaluation of the command is a Ray task (quantviz.eval.cluster)."""
    p.add_argument(
        "--cluster",
        type=cluster_address,
        metavar="ADDR",
        help="evaluate the points as Ray tasks: local (a Ray instance on this machine's "
        "cores, shut down afterwards), auto (the running cluster) or ray://HOST:PORT; "
        'needs pip install "quantviz[cluster]"',
    )


def _common(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    p.add_argument(
        "--model",
        "-m",
        required=model_required,
        metavar="M",
        help="model source: sample:NAME, a TorchScript / .pt2 / state_dict file, or a Hugging "
        "Face checkpoint folder",
    )
    p.add_argument(
        "--data",
        "-d",
        metavar="D",
        help="evaluation data: sample:digits or a .npz/.pt with x (and y); for a causal "
        "language model token ids (a .npz with input_ids [N, T], sample:tiny_lm) or a .txt "
        "file tokenized with the model's tokenizer.json",
    )
    p.add_argument(
        "--seq-len",
        type=int,
        metavar="T",
        help="language models: tokens per sequence; a .txt is cut into windows of T tokens "
        "(default 128, at most the model's positions), .npz rows into windows of T",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="allow unpickling a whole nn.Module (runs code from the file) or a Hugging Face "
        "checkpoint's own code (config.json auto_map)",
    )
    p.add_argument(
        "--input-shape",
        type=input_shape_arg,
        metavar="1,C,H,W",
        help="the model's input shape with the batch dimension, e.g. 1,3,224,224 (default: "
        "from the model file, its .json sidecar, or one sample of --data)",
    )
    p.add_argument(
        "--transforms",
        type=transforms_arg,
        metavar="T,...",
        help="model transforms applied in order before quantization, replacing the "
        "config's: fold_bn, cle, bias_correction, smoothquant, hadamard; parameters as "
        "smoothquant:alpha=0.8 (none: no transforms)",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        metavar="N",
        help="samples per forward pass (default 256; a model that refuses batches larger "
        "than one is run one sample at a time, with a warning)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (bars on a terminal, plain lines otherwise)",
    )
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
        dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}", parser_class=_Parser
    )
    p = sub.add_parser("eval", help="evaluate one configuration")
    _common(p)
    p.add_argument(
        "--config",
        "-c",
        metavar="C",
        help="config file (.json / .yaml); default: 8-bit uniform symmetric per-channel "
        "min/max weights, float activations (quantviz.core.defaults.DEFAULT_CONFIG)",
    )
    p = sub.add_parser("sweep", help="uniform bit-width sweep (accuracy vs memory)")
    _common(p)
    p.add_argument("--bits", default="2,3,4,5,6,8", help="comma-separated bit-widths")
    p.add_argument(
        "--config", "-c", metavar="C", help="config whose default weight/activation scheme is swept"
    )
    p.add_argument(
        "--methods",
        type=methods_arg,
        metavar="M,...",
        help="one curve per method: roundings (nearest, adaround, gptq), transform chains "
        "(cle+bias_correction, smoothquant, hadamard) or both (smoothquant+gptq); "
        "parameters in brackets: 'smoothquant(alpha=0.8)+gptq' (else the config's, else "
        "the defaults); each replaces the config's transforms and rounding; a method that "
        "does not apply to the model is skipped and named",
    )
    add_cluster_option(p)
    p = sub.add_parser(
        "sensitivity",
        help="per-layer sensitivity (each layer alone quantized); Ctrl-C prints the layers "
        "measured so far",
    )
    _common(p)
    p.add_argument("--bits", default="4", help="bit-width(s), e.g. 4 or 3,4")
    add_cluster_option(p)
    p = sub.add_parser(
        "mixed",
        help="exact mixed precision: the per-layer schemes of least proxy cost under a budget",
    )
    _common(p)
    p.add_argument(
        "--choices",
        default=DEFAULT_CHOICES,
        metavar="LIST",
        help="the menu of schemes per layer, e.g. int4:g128,int8:pc,nf4,mxfp4,nvfp4,float "
        f"(intN/uintN[:pt|pc|gN], nf4, fp8, fp4, mx*, nvfp4, float; default {DEFAULT_CHOICES})",
    )
    p.add_argument(
        "--budget",
        required=True,
        metavar="B",
        help="0.25 (fraction of the float model), 4.5bpw (bits per weight), 30kB / 3MB "
        "(model size) or 2GBOPs (bit operations per sample)",
    )
    p.add_argument(
        "--proxy",
        default="mse",
        choices=("kl", "hessian", "fisher", "mse"),
        help="cost of each (layer, scheme): mse (weight squared error, no data needed), kl "
        "(output KL with the layer alone quantized), hessian (Hutchinson trace x ||dW||^2), "
        "fisher (empirical Fisher x dW^2)",
    )
    p.add_argument(
        "--solver",
        default="exact",
        choices=("exact", "greedy"),
        help="exact (ILP, HiGHS) or greedy (least cost per byte saved)",
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help='also evaluate the chosen configuration on the data (adds "evaluation")',
    )
    add_cluster_option(p)  # the kl proxy's evaluations as Ray tasks
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
    p = sub.add_parser(
        "qat",
        help="quantization-aware fine-tuning with the straight-through estimator "
        "(--lsq / --pact learn the grid)",
    )
    _common(p)
    p.add_argument("--config", "-c", metavar="C", help="config to fine-tune for (default: W8)")
    p.add_argument("--epochs", type=int, default=3, metavar="N", help="epochs (default 3)")
    method = p.add_mutually_exclusive_group()
    method.add_argument("--lsq", action="store_true", help="learn the step size (LSQ)")
    method.add_argument("--pact", action="store_true", help="learn the clipping value (PACT)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument(
        "--train-batch-size", type=int, default=64, metavar="N", help="training batch size"
    )
    p.add_argument(
        "--save-weights",
        metavar="OUT.safetensors",
        help="write the fine-tuned float weights (open them with OUT.safetensors::factory)",
    )
    _debug_parsers(sub)
    return parser


def _debug_parsers(sub: argparse._SubParsersAction) -> None:
    """``debug`` (error propagation) and ``proxies`` (sensitivity proxies vs the truth)."""
    from quantviz.cli.debug_args import add_debug_args, add_proxies_args

    p = sub.add_parser(
        "debug",
        help="error propagation: each layer's output error alone (isolated) and with "
        "everything before it quantized (cumulative)",
    )
    _common(p)
    add_debug_args(p)
    add_cluster_option(p)  # the batches as Ray tasks, their error sums added here
    p = sub.add_parser(
        "proxies",
        help="sensitivity proxies (mse, output_sqnr, kl, fisher, hessian) ranked against the "
        "measured single-layer drop",
    )
    _common(p)
    add_proxies_args(p)


def gui_parser() -> argparse.ArgumentParser:
    """The parser of ``quantviz [MODEL] [--data FILE]`` (the app)."""
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
