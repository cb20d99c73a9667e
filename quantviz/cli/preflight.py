"""Checks of the command line that need no torch: run before any heavy import.

A missing model, data or config file, a config that does not parse, a bad batch size or an
export path that cannot be written are reported in a fraction of a second instead of after
importing torch and loading the model. :mod:`quantviz.io.config` imports no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from quantviz.cli.parser import UsageError

__all__ = ["SAMPLE_PREFIX", "check_file", "preflight"]

SAMPLE_PREFIX = "sample:"


def check_file(source: str, option: str, *, allow_dir: bool = False) -> None:
    """``UsageError`` when ``source`` (not a ``sample:``) names no readable file."""
    if source.startswith(SAMPLE_PREFIX):
        return
    path = Path(source).expanduser()
    if not path.exists():
        why = "a dangling symbolic link" if path.is_symlink() else "no such file"
        raise UsageError(f"{source}: {why} ({option})")
    if path.is_dir() and not allow_dir:
        raise UsageError(f"{source}: is a directory, not a file ({option})")


def _model_path(source: str) -> str:
    """The file part of ``path::package.module:factory``."""
    return source.partition("::")[0]


def _check_output(args: argparse.Namespace) -> None:
    from quantviz.io.exporters import SUFFIXES

    out = Path(args.output)
    suffixes = SUFFIXES[args.format]
    if out.suffix.lower() not in suffixes:
        raise UsageError(f"-o {out}: a {args.format} export needs a {'/'.join(suffixes)} name")
    if out.is_dir():
        raise UsageError(f"-o {out}: is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: directory {out.parent} does not exist")


def preflight(args: argparse.Namespace) -> Any:
    """Check ``args`` without torch; return the parsed ``--config`` (eval, sweep) or None."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: must be >= 1, got {args.batch_size}")
    model = _model_path(args.model)
    if not model:
        raise UsageError(f"--model {args.model!r}: no file named before '::'")
    check_file(model, "--model", allow_dir=True)
    if args.data:
        check_file(args.data, "--data")
    if getattr(args, "cluster", None):
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError(
                '--cluster: Ray is not installed; install it with: pip install "quantviz[cluster]"'
            )
    me = getattr(args, "export_model_explorer", None)
    if me:
        out = Path(me)
        if out.is_dir():
            raise UsageError(f"--export-model-explorer {out}: is a directory")
        if not out.parent.is_dir():
            raise UsageError(
                f"--export-model-explorer {out}: directory {out.parent} does not exist"
            )
    config = None
    if args.command == "mixed":  # the menu and the budget parse without torch
        from quantviz.core.mixed_spec import parse_budget, parse_choices

        try:
            parse_choices(args.choices)
            parse_budget(args.budget)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "save_weights", None):
        out = Path(args.save_weights)
        if out.suffix.lower() != ".safetensors":
            raise UsageError(f"--save-weights {out}: needs a .safetensors name")
        if not out.parent.is_dir():
            raise UsageError(f"--save-weights {out}: directory {out.parent} does not exist")
    if args.command == "export":
        check_file(args.config, "--config")
        _check_output(args)
    elif getattr(args, "config", None):
        from quantviz.io.config import load_config

        config = load_config(args.config)
    transforms = getattr(args, "transforms", None)
    if transforms is not None and args.command in ("eval", "sweep", "debug"):
        if config is None:
            from quantviz.core.defaults import DEFAULT_CONFIG

            config = DEFAULT_CONFIG
        config = config.with_transforms(transforms)
    return config
