"""Atomic file writes: write a temporary file next to the target, then ``os.replace`` it.

Readers see either the old file or the complete new one, never a partial write; when the
writer fails, the target is left untouched and the temporary file is removed. The temporary
file lives in the target's directory (so the rename never crosses a file system) and keeps
the target's suffix (``.model.k3j9x.tmp.onnx``), for writers that pick a format by suffix.

The new file gets the mode of the file it replaces, or ``0o666`` minus the umask for a new
file, like a plain ``open(path, "w")``. A symlinked target is written through the link; a
dangling symlink, a directory, a missing or unwritable folder and a full disk are errors
(``OSError`` subclasses whose message names the target) that leave the old file intact.

A writer killed between creating its temporary file and the rename (SIGKILL, power loss)
leaves the temporary file behind. Every write sweeps the target's folder for temporary
files of this naming (``.{stem}.{8 random characters}.tmp{suffix}``) not modified for
:data:`STALE_AFTER` seconds (a younger one may belong to a write in progress in another
process) and deletes them.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "STALE_AFTER",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_temp_name",
    "sweep_stale_temp_files",
]

#: Seconds after which a temporary file of ours is considered abandoned.
STALE_AFTER = 60.0

# tempfile.mkstemp's names: prefix + 8 characters of [a-z0-9_] + suffix
_TEMP_NAME = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^./]*)?$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which races with threads.
_UMASK = _current_umask()


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the name of one of our temporary files."""
    return bool(_TEMP_NAME.match(name))


def sweep_stale_temp_files(
    folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER
) -> list[Path]:
    """Delete our temporary files in ``folder`` not modified for ``older_than`` seconds.

    Only regular files named like ours are touched (never symlinks, folders or other
    names). Returns what was deleted; errors (a file gone meanwhile, no permission) are
    ignored: the sweep is housekeeping, never a reason for a write to fail."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not is_temp_name(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than:
                continue
            os.unlink(e.path)
        except OSError:
            continue
        removed.append(Path(e.path))
    return removed


def _final_target(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_symlink():
        real = Path(os.path.realpath(p))
        if not real.exists():
            raise FileNotFoundError(
                2, f"dangling symlink (to {str(real)!r}, which does not exist)", str(p)
            )
        return real
    return p


def _mkstemp(target: Path) -> str:
    """Create our temporary file next to ``target``; errors name ``target``."""
    parent = target.parent
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=parent
        )
    except FileNotFoundError:
        raise FileNotFoundError(
            2,
            f"No such file or directory (the folder {str(parent)!r} does not exist)",
            str(target),
        ) from None
    except PermissionError:
        raise PermissionError(
            13, f"Permission denied (cannot create files in {str(parent)!r})", str(target)
        ) from None
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(target)) from None
    os.close(fd)
    return name


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
    if target.parent.is_dir():
        sweep_stale_temp_files(target.parent)
    tmp = Path(_mkstemp(target))
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
        try:
            os.replace(tmp, target)
        except IsADirectoryError:  # the target became a folder meanwhile
            raise IsADirectoryError(21, "Is a directory", str(target)) from None
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
