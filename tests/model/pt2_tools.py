"""Editing real torch.export archives into hostile or broken ones (test helper)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["edit_json", "rewrite"]


def rewrite(src: Path, dst: Path, edits: dict[str, Callable[[bytes], bytes]]) -> None:
    """Copy the zip ``src`` to ``dst``, passing entries whose name ends with a key through."""
    hit = set()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, fn in edits.items():
                if info.filename.endswith(suffix):
                    data = fn(data)
                    hit.add(suffix)
            zout.writestr(info.filename, data)
        for suffix, fn in edits.items():  # entries to add
            if suffix not in hit and suffix.startswith("+"):
                root = zin.namelist()[0].split("/")[0]
                zout.writestr(f"{root}/{suffix[1:]}", fn(b""))
    assert hit | {s for s in edits if s.startswith("+")} == set(edits), "edit matched nothing"


def edit_json(fn: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        doc = json.loads(data)
        fn(doc)
        return json.dumps(doc).encode()

    return run
