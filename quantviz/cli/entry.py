"""``main``: parse, dispatch to a subcommand or the app, turn every failure into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from quantviz.cli.errors import GuiMissing, error_line
from quantviz.cli.parser import PROG, SUBCOMMANDS, build_parser, gui_parser

__all__ = ["main"]


def _run_gui(args: argparse.Namespace) -> int:
    try:
        from quantviz.gui.app import QtPlatformUnavailable, run
    except ImportError as exc:
        raise GuiMissing(
            f"the app is not available ({exc}); install quantviz[gui], or use a headless "
            f"subcommand: {', '.join(SUBCOMMANDS)}"
        ) from exc
    try:
        return int(run(args.model, args.data) or 0)
    except QtPlatformUnavailable as exc:  # no display / missing system libraries
        raise GuiMissing(str(exc)) from exc


class _Warnings(logging.Handler):
    """``quantviz: warning: ...`` lines on the current stderr for the quantviz loggers."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = " ".join(record.getMessage().split())
            print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _run(argv: list[str]) -> int:
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in SUBCOMMANDS or (first is None and {"-h", "--help", "--version"} & set(argv)):
        args = build_parser().parse_args(argv)
        if args.command is None:  # pragma: no cover - argparse handles --help itself
            return _run_gui(gui_parser().parse_args([]))
        from quantviz.cli.commands import run_command

        return run_command(args)
    return _run_gui(gui_parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logger = logging.getLogger("quantviz")
    handler = _Warnings(logging.WARNING)
    logger.addHandler(handler)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING or logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    try:
        return _run(argv)
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(error_line(exc), file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
