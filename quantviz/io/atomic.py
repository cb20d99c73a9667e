"""Atomic file writes: write a temporary file next to the target, then ``os.replace`` it.

Readers see either the old file or the complete new one, never a partial write; when the
writer fails, the target is left untouched and the temporary file is removed. The temporary
file lives in the target's directory (so the rename never crosses a file system) and keeps
the target's suffix (``.model.k3j9x.tmp.onnx``), for writers that pick a format by suffix.

The new file gets the mode of the file it replaces, or ``0o666`` minus the umask for a new
file, like a plain ``open(path, "w")``. A symlinked target is written through the link.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with threads.
_UMASK = _current_umask()


def _final_target(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_symlink():
        return Path(os.path.realpath(p))
    return p


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically becomes ``path``.

    The writer must have closed the file by the end of the ``with`` block. If the block
    raises, the temporary file is deleted and ``path`` is unchanged. ``OSError`` from a
    missing directory or a permission problem propagates (raised before the block runs
    when the temporary file cannot be created).

    >>> with atomic_path("out.onnx") as tmp:      # doctest: +SKIP
    ...     onnx.save(model, tmp)
    """
    target = _final_target(path)
    if target.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(target))
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(2, "the writer did not create the temporary file", str(tmp))
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (all of it or, on failure, nothing)."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically; newlines are written as given (no translation)."""
    atomic_write_bytes(path, text.encode(encoding), fsync=fsync)
