"""The errors of opening a model (shared by the loaders so none imports another)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ModelLoadError", "TrustRequired"]


class ModelLoadError(ValueError):
    """A model source could not be opened; the message names the file and the problem."""


class TrustRequired(ModelLoadError):
    """Opening ``file`` would run code from it (or from next to it); refused without trust.

    ``reason`` says what would run (a pickle, an architecture module that is not an installed
    package, Python guard code in a ``.pt2``). Callers catch this type, ask the user (naming
    ``file``) and retry with ``trust=True`` (CLI ``--trust``).
    """

    def __init__(self, file: str | Path, reason: str) -> None:
        self.file = str(file)
        self.reason = reason
        super().__init__(
            f"{self.file}: {reason}. Opening it runs code from the file; pass --trust "
            "(trust=True) only if you trust its origin"
        )

    def __reduce__(self) -> tuple[type[TrustRequired], tuple[str, str]]:
        return (type(self), (self.file, self.reason))
