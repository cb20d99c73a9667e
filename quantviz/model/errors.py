"""The errors of opening a model (shared by the loaders so none imports another)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "ArchitectureRequired",
    "InputShapeRequired",
    "ModelLoadError",
    "TrustRequired",
    "brief",
    "weights_only_reason",
]


class ModelLoadError(ValueError):
    """A model source could not be opened; the message names the file and the problem."""


class ArchitectureRequired(ModelLoadError):
    """``file`` holds only weights (a state_dict): the caller must name the architecture
    (``package.module:factory``) that builds the module they fill."""

    def __init__(self, file: str | Path) -> None:
        self.file = str(file)
        super().__init__(
            f"{self.file}: holds a state_dict (weights only); give the architecture as "
            f"{Path(self.file).name}::package.module:factory (or arch=)"
        )

    def __reduce__(self) -> tuple[type[ArchitectureRequired], tuple[str]]:
        return (type(self), (self.file,))


class InputShapeRequired(ModelLoadError):
    """Nothing in ``file`` (nor a sidecar) tells the model's input shape: the caller gives
    it (``input_shape=``, CLI ``--input-shape``) or data whose samples show it."""

    def __init__(self, file: str | Path) -> None:
        self.file = str(file)
        name = Path(self.file).name
        super().__init__(
            f"{self.file}: cannot tell the model's input shape; give data (--data FILE: one "
            "sample of it is the example input), pass --input-shape (e.g. 1,3,32,32; "
            f'input_shape= in Python) or put {{"input_shape": [1, 3, 32, 32]}} in {name}.json '
            "next to the file"
        )

    def __reduce__(self) -> tuple[type[InputShapeRequired], tuple[str]]:
        return (type(self), (self.file,))


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
            f"{self.file}: {reason}. Refused: pass --trust (trust=True) only if you trust "
            "where it comes from"
        )

    def __reduce__(self) -> tuple[type[TrustRequired], tuple[str, str]]:
        return (type(self), (self.file, self.reason))


def brief(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def weights_only_reason(exc: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` refused, without torch's boilerplate.

    E.g. ``pickle calls builtins.exec, which weights-only loading blocks``.
    """
    text = str(exc)
    m = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if m:
        return f"the pickle calls {m.group(1)}, which weights-only loading blocks"
    m = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if m:
        return m.group(1).strip().rstrip(".")[:200]
    skip = ("Weights only load failed", "Check the documentation", "Please file an issue")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(skip):
            return line.rstrip(".")[:200]
    return brief(exc, 200)
