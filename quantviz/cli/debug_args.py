"""The arguments of ``quantviz debug`` and ``quantviz proxies`` (no torch imported)."""

from __future__ import annotations

import argparse

__all__ = ["ME_VALUES", "PROXY_NAMES", "add_debug_args", "add_proxies_args", "proxy_list"]

#: the names of :data:`quantviz.eval.proxies.PROXIES` (kept here so --help needs no torch)
PROXY_NAMES = ("mse", "output_sqnr", "kl", "fisher", "hessian")
#: what a Model Explorer node's value can be (:data:`quantviz.io.model_explorer.VALUES`)
ME_VALUES = tuple(
    f"{side}_{m}" for side in ("cumulative", "isolated") for m in ("sqnr_db", "mse", "cosine")
)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def proxy_list(text: str) -> tuple[str, ...]:
    """``mse,hessian`` -> ``("mse", "hessian")``; unknown names are bad usage."""
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in names if p not in PROXY_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown proxy {', '.join(bad) or repr(text)} (choose from {', '.join(PROXY_NAMES)})"
        )
    return names


def add_debug_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="C",
        help="config file (.json / .yaml); default: the default config (W8 per-channel)",
    )
    p.add_argument(
        "--max-samples",
        type=_positive,
        metavar="N",
        help="use the first N samples of the data (default: all)",
    )
    p.add_argument(
        "--jump-db",
        type=_non_negative,
        default=3.0,
        metavar="DB",
        help="flag a layer whose cumulative SQNR is more than DB below the previous "
        "layer's (default 3 dB: the relative noise power doubles)",
    )
    p.add_argument(
        "--export-model-explorer",
        metavar="FILE",
        help="also write Model Explorer node data (JSON) to FILE",
    )
    p.add_argument(
        "--me-value",
        choices=ME_VALUES,
        default="cumulative_sqnr_db",
        help="the number each Model Explorer node shows (default cumulative_sqnr_db)",
    )


def add_proxies_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bits", type=_positive, default=4, help="weight bit-width (default 4)")
    p.add_argument(
        "--granularity",
        choices=("per_tensor", "per_channel"),
        default="per_channel",
        help="weight scheme granularity (uniform symmetric min/max; default per_channel)",
    )
    p.add_argument(
        "--proxy",
        type=proxy_list,
        default=PROXY_NAMES,
        metavar="NAME[,NAME]",
        help=f"proxies to rank (default all: {','.join(PROXY_NAMES)})",
    )
    p.add_argument(
        "--probes",
        type=_positive,
        default=32,
        metavar="N",
        help="Rademacher probes of the Hessian trace (default 32)",
    )
