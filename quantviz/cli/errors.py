"""The error boundary of the command line: any exception becomes one line and exit 2.

Commands mark what they are working on with :func:`where` (``with where(args.config): ...``);
an exception leaving that block remembers the file, and :func:`error_line` prefixes it unless
the message already names it. Errors of the user's model during evaluation
(:class:`quantviz.eval.results.EvalError`) name the model, the stage and the samples
themselves. Exceptions that are not a known kind of bad input (``ValueError`` — config,
model, data and evaluation errors are ValueErrors —, ``OSError``, ``KeyError``) are still
one line, with their type and a hint to ``--debug``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from quantviz.cli.parser import PROG

__all__ = ["GuiMissing", "error_line", "where"]

_ATTR = "_quantviz_where"


class GuiMissing(RuntimeError):
    """The app cannot start (Qt is not installed)."""


@contextmanager
def where(file: str | None) -> Iterator[None]:
    """Attribute exceptions raised inside the block to ``file`` (the innermost block wins)."""
    try:
        yield
    except Exception as exc:
        if file and getattr(exc, _ATTR, None) is None:
            with suppress(AttributeError, TypeError):  # exotic exception types
                setattr(exc, _ATTR, str(file))
        raise


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        msg = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.filename is not None:
        detail = exc.strerror or str(exc)
        msg = f"{exc.filename}: {detail}"
    else:
        msg = str(exc)
    return " ".join(msg.split())


def _first_sentence(msg: str, limit: int = 300) -> str:
    """The head of a long library message (torch's dispatcher lists every backend)."""
    if len(msg) <= limit:
        return msg
    cut = msg.find(". ", 40, limit)
    return msg[: cut + 1] if cut > 0 else msg[: limit - 3] + "..."


def error_line(exc: BaseException) -> str:
    """``quantviz: error: <file/stage>: <message>`` for ``exc``, on one line."""
    from quantviz.cli.parser import UsageError

    msg = _message(exc)
    known = isinstance(exc, (ValueError, OSError, KeyError, GuiMissing, UsageError))
    if not known:
        msg = _first_sentence(msg)
        msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    elif not msg:
        msg = type(exc).__name__
    if type(exc).__name__ == "EvalError":  # names the model, the stage and the samples
        file = None
    else:
        file = getattr(exc, _ATTR, None)
    if file and file not in msg:
        msg = f"{file}: {msg}"
    if not known:
        msg += " (unexpected error; --debug shows the traceback)"
    return f"{PROG}: error: {msg}"
