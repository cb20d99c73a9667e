"""What a model file is, from its content (never its name)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from quantviz.model.errors import ModelLoadError

__all__ = ["detect_kind"]


def detect_kind(path: Path) -> str:
    """What a model file holds, from its content.

    One of ``torchscript``, ``exported``, ``torch_save`` (zip written by ``torch.save``),
    ``pickle`` (legacy ``torch.save``), ``safetensors``, ``onnx`` (a protobuf ``ModelProto``
    starting with its ``ir_version``), or ``huggingface`` for a folder holding
    ``config.json`` (a ``save_pretrained`` checkpoint). Raises :class:`ModelLoadError` for
    anything else, including truncated archives and folders without ``config.json``.
    """
    if path.is_dir():
        if (path / "config.json").is_file():
            return "huggingface"
        raise ModelLoadError(
            f"{path}: is a directory without config.json, not a model file; a Hugging Face "
            "checkpoint folder (what save_pretrained writes) holds config.json and "
            "model.safetensors"
        )
    with open(path, "rb") as fh:
        head = fh.read(16)
        fh.seek(0, 2)
        size = fh.tell()
    if size == 0:
        raise ModelLoadError(f"{path}: file is empty")
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelLoadError(f"{path}: corrupt or truncated archive ({exc})") from None
        if any(n.endswith("/models/model.json") or n.endswith("archive_format") for n in names):
            return "exported"
        if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch_save"
        raise ModelLoadError(
            f"{path}: a zip archive, but not one written by torch.jit.save, torch.export.save "
            "or torch.save"
        )
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= n <= size - 8:
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    if _is_onnx(head):
        return "onnx"
    raise ModelLoadError(
        f"{path}: not a model file quantviz can read (expected TorchScript, a torch.export .pt2, "
        "safetensors, a torch.save file or ONNX)"
    )


#: ModelProto fields that follow ir_version (field 1): producer_name .. functions
_ONNX_NEXT = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A, 0x82}


def _is_onnx(head: bytes) -> bool:
    """An ONNX file: field 1 (``ir_version``, a small varint) first, then a ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] < 64 and head[2] in _ONNX_NEXT
