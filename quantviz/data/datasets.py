"""Evaluation data: the bundled digits splits or a user ``.npz`` / ``.pt`` file.

A user file holds ``x`` (float, ``[N, ...]`` matching the model's example input except the
batch dimension; integer token ids ``[N, T]`` for a language model), optionally ``y`` (int
labels, length N) and ``calib_x`` (calibration inputs; default: the first 256 samples of
``x``). Everything is validated against the model before
any work starts; each problem is a ``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from quantviz.model.errors import weights_only_reason
from quantviz.model.limits import claimed_bytes, format_bytes, load_limit, too_big

if TYPE_CHECKING:
    from quantviz.model.handle import ModelHandle

__all__ = [
    "DEFAULT_CALIB_SIZE",
    "DataError",
    "EvalData",
    "load_data",
    "load_digits",
    "load_model_for_data",
]

DEFAULT_CALIB_SIZE = 256
SAMPLE_PREFIX = "sample:"
BUNDLED = ("digits",)
LOAD_FACTOR = 3
"""Peak memory of loading a data file relative to its arrays' size (measured: a 256 MiB
float64 ``.npz`` peaks at 612 MiB to read and check, then the cast to the model's dtype)."""


class DataError(ValueError):
    """Evaluation data that cannot be used; the message names the file and the field."""


@dataclass
class EvalData:
    """Evaluation inputs ``x`` [N, ...], labels ``y`` [N] int64 (or None), calibration inputs."""

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    calib_x: torch.Tensor
    #: a training split (``sample:digits``; ``train_x`` / ``train_y`` in a file), for QAT only
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def batches(self, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Consecutive ``(x, y)`` batches (``y`` None without labels); views, no copies."""
        _check_batch_size(batch_size)
        for i in range(0, len(self), batch_size):
            yield self.x[i : i + batch_size], None if self.y is None else self.y[i : i + batch_size]

    def calib_batches(self, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """Consecutive batches of the calibration inputs."""
        _check_batch_size(batch_size)
        for i in range(0, int(self.calib_x.shape[0]), batch_size):
            yield self.calib_x[i : i + batch_size]

    def num_batches(self, batch_size: int = 256) -> int:
        return -(-len(self) // batch_size)

    def num_calib_batches(self, batch_size: int = 256) -> int:
        return -(-int(self.calib_x.shape[0]) // batch_size)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")


def load_digits() -> dict[str, np.ndarray]:
    """The bundled ``digits.npz`` arrays: x, y, train_idx, calib_idx, test_idx."""
    from quantviz.model.samples import sample_path

    with np.load(sample_path("digits.npz"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_data(source: str | None, handle: ModelHandle | None = None) -> EvalData:
    """Open evaluation data and validate it against ``handle`` (if given).

    ``source``: ``sample:digits`` (test split for evaluation, calibration split for
    calibration), a ``.npz`` / ``.pt`` file, or ``None`` for ``handle.default_data``.
    """
    if source is None:
        if handle is None or not handle.default_data:
            name = handle.name if handle is not None else "no model"
            raise DataError(f"data: {name} has no default data; give a .npz or .pt file")
        source = handle.default_data
    if source.startswith(SAMPLE_PREFIX):
        name = source[len(SAMPLE_PREFIX) :]
        if name not in BUNDLED:
            raise DataError(f"{source}: unknown bundled data; available: sample:digits")
        try:
            d = load_digits()
        except FileNotFoundError as exc:
            raise DataError(f"{source}: {exc}") from None
        data = EvalData(
            name=source,
            x=torch.from_numpy(d["x"][d["test_idx"]]),
            y=torch.from_numpy(d["y"][d["test_idx"]]),
            calib_x=torch.from_numpy(d["x"][d["calib_idx"]]),
            train_x=torch.from_numpy(d["x"][d["train_idx"]]),
            train_y=torch.from_numpy(d["y"][d["train_idx"]]),
        )
    else:
        data = _load_file(Path(source).expanduser())
    if handle is not None:
        data = validate(data, handle)
    return data


def _load_file(path: Path) -> EvalData:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    if path.exists() and not path.is_file():  # a FIFO would block the first read forever
        raise DataError(f"{path}: not a regular file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    fields = _read_arrays(path)
    if "x" not in fields:
        raise DataError(f"{path}: no field 'x' (found: {', '.join(sorted(fields)) or 'none'})")
    x = _as_tensor(path, "x", fields["x"])
    if x.dim() < 1 or x.shape[0] == 0:
        raise DataError(f"{path}: x: must have at least one sample, got shape {tuple(x.shape)}")
    _check_finite(path, "x", x)
    y = _as_tensor(path, "y", fields["y"]) if fields.get("y") is not None else None
    if fields.get("calib_x") is not None:
        calib = _as_tensor(path, "calib_x", fields["calib_x"])
        if calib.dim() >= 1 and calib.shape[0] > 0:
            _check_finite(path, "calib_x", calib)
    else:
        calib = x[:DEFAULT_CALIB_SIZE]
    train_x = train_y = None
    if fields.get("train_x") is not None:
        train_x = _as_tensor(path, "train_x", fields["train_x"])
        _check_finite(path, "train_x", train_x)
        if fields.get("train_y") is not None:
            train_y = _as_tensor(path, "train_y", fields["train_y"])
            if train_y.shape[:1] != train_x.shape[:1]:
                raise DataError(
                    f"{path}: train_y: {train_y.shape[0]} labels for {train_x.shape[0]} "
                    "train_x samples"
                )
    return EvalData(name=str(path), x=x, y=y, calib_x=calib, train_x=train_x, train_y=train_y)


def _read_arrays(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":
        _check_zip_sizes(path)
        if not _looks_like_torch_zip(path):
            return _read_npz(path)
    if head[:6] == b"\x93NUMPY":
        raise DataError(f"{path}: a single .npy array; save x (and y) with np.savez as a .npz")
    try:
        with warnings.catch_warnings(), open(path, "rb") as fh:
            warnings.simplefilter("ignore")
            # a file object, not the name: torch.load dispatches on a ".safetensors" suffix
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path}: holds pickled Python objects, which are never unpickled (that would run "
            f"code from the file); save a dict of tensors {{'x': ..., 'y': ...}} instead "
            f"({weights_only_reason(exc)})"
        ) from None
    except MemoryError as exc:
        raise DataError(f"{path}: claims more memory than is available ({exc})") from None
    except Exception as exc:
        if "allocate" in str(exc):  # a legacy torch.save file claiming a huge storage
            raise DataError(
                f"{path}: claims more memory than is available ({_first_line(exc)})"
            ) from None
        raise DataError(f"{path}: not a readable .npz or .pt file ({_first_line(exc)})") from None
    if isinstance(obj, torch.Tensor):
        return {"x": obj}
    if isinstance(obj, (tuple, list)) and 1 <= len(obj) <= 2:
        return {"x": obj[0], "y": obj[1] if len(obj) == 2 else None}
    if not isinstance(obj, Mapping):
        raise DataError(f"{path}: expected a dict with 'x' (and 'y'), got {type(obj).__name__}")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _check_zip_sizes(path: Path) -> None:
    """Refuse a zip whose members inflate past the load limit, before inflating anything."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated zip archive ({exc})") from None
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    msg = too_big(
        f"{path}: its {len(infos)} zip member(s) (compressed {format_bytes(packed)})",
        total,
        factor=LOAD_FACTOR,
    )
    if msg:
        raise DataError(msg)


def _npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    major, minor = np.lib.format.read_magic(fh)
    if (major, minor) == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)  # type: ignore[no-any-return]
    if (major, minor) == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)  # type: ignore[no-any-return]
    raise ValueError(f"unsupported .npy format version {major}.{minor}")


def _read_npz(path: Path) -> dict[str, Any]:
    """The arrays of an ``.npz``, each header checked against the load limit before reading."""
    limit = load_limit()
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as fh:
                    shape, _fortran, dtype = _npy_header(fh)
                    header_len = fh.tell()
                if dtype.hasobject:
                    raise DataError(
                        f"{path}: {name}: an array of Python objects (dtype {dtype}), which would "
                        "be unpickled; save numeric arrays"
                    )
                claimed = claimed_bytes(shape, dtype.itemsize)
                total += claimed
                msg = too_big(
                    f"{path}: {name}: shape {shape} {dtype}", claimed, limit, factor=LOAD_FACTOR
                )
                msg = msg or too_big(f"{path}: all its arrays", total, limit, factor=LOAD_FACTOR)
                if msg:
                    raise DataError(msg)
                held = info.file_size - header_len
                if held != claimed:
                    raise DataError(
                        f"{path}: {name}: header claims shape {shape} {dtype} "
                        f"({format_bytes(claimed)}) but the member holds {format_bytes(held)}: "
                        "truncated or corrupt"
                    )
        with open(path, "rb") as raw, np.load(raw, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except DataError:
        raise
    except MemoryError as exc:
        raise DataError(f"{path}: claims more memory than is available ({exc})") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({_first_line(exc)})") from None


def _looks_like_torch_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("data.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _as_tensor(path: Path, field: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise DataError(
                f"{path}: {field}: a {value.layout} tensor; save a dense tensor (tensor.to_dense())"
            )
        if value.is_meta:
            raise DataError(f"{path}: {field}: a meta tensor (shape only, no data)")
        if value.is_quantized or value.dtype.is_complex:
            raise DataError(f"{path}: {field}: unsupported tensor dtype {value.dtype}")
        # a view can claim far more than its storage holds (stride 0: one element, any size)
        msg = too_big(
            f"{path}: {field}: shape {tuple(value.shape)} {value.dtype}",
            claimed_bytes(value.shape, value.element_size()),
            factor=LOAD_FACTOR,
        )
        if msg:
            raise DataError(msg)
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind not in "biuf":
            raise DataError(f"{path}: {field}: unsupported array dtype {value.dtype}")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DataError(f"{path}: {field}: expected an array or tensor, got {type(value).__name__}")


def _check_finite(path: Path, field: str, t: torch.Tensor) -> None:
    if not t.dtype.is_floating_point:
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        first = int(bad.reshape(t.shape[0], -1).any(dim=1).nonzero()[0, 0]) if t.dim() else 0
        raise DataError(
            f"{path}: {field}: contains {n_nan} NaN and {n_inf} infinite value(s) "
            f"(first in sample {first})"
        )


def validate(data: EvalData, handle: ModelHandle) -> EvalData:
    """Check ``data`` fits ``handle``'s input and classes; cast x to the model's input dtype.

    Raises :class:`DataError` naming the source and the field (``x``, ``y``, ``calib_x``).
    """
    src = data.name
    example = handle.example_input
    want_float = example.dtype.is_floating_point
    out: dict[str, torch.Tensor] = {}
    fields = [("x", data.x), ("calib_x", data.calib_x)]
    if data.train_x is not None:
        fields.append(("train_x", data.train_x))
    for field, t in fields:
        if t.dim() < 1 or t.shape[0] == 0:
            raise DataError(f"{src}: {field}: empty (shape {tuple(t.shape)})")
        if tuple(t.shape[1:]) != tuple(example.shape[1:]):
            raise DataError(
                f"{src}: {field}: sample shape {tuple(t.shape[1:])} does not match the model "
                f"input {tuple(example.shape[1:])} (full shape {tuple(t.shape)}; the first "
                "dimension is the sample index)"
            )
        if want_float and not t.dtype.is_floating_point:
            raise DataError(f"{src}: {field}: must be floating point, got {t.dtype}")
        if not want_float and (t.dtype.is_floating_point or t.dtype == torch.bool):
            raise DataError(f"{src}: {field}: the model takes {example.dtype} input, got {t.dtype}")
        vocab = handle.meta.get("vocab_size")
        if not want_float and isinstance(vocab, int) and t.numel():
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= vocab:
                raise DataError(
                    f"{src}: {field}: token ids {lo}..{hi} do not fit {handle.name}: its "
                    f"vocabulary is 0..{vocab - 1}"
                )
        if t.dtype.is_floating_point and not torch.isfinite(t).all():
            raise DataError(f"{src}: {field}: contains NaN or infinite values")
        out[field] = t.to(example.dtype)
    y = data.y
    if y is not None:
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
            raise DataError(f"{src}: y: labels must be integers, got {y.dtype}")
        if y.dim() != 1:
            raise DataError(f"{src}: y: must be 1-D (one label per sample), got {tuple(y.shape)}")
        if y.shape[0] != out["x"].shape[0]:
            raise DataError(
                f"{src}: y: has {y.shape[0]} labels for {out['x'].shape[0]} samples in x"
            )
        y = y.to(torch.int64)
        n_cls = handle.num_classes or _output_classes(handle)
        if y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or (n_cls is not None and hi >= n_cls):
                raise DataError(
                    f"{src}: y: labels must be in 0..{(n_cls or 0) - 1}"
                    f" (the model has {n_cls} classes), got range {lo}..{hi}"
                    if n_cls is not None
                    else f"{src}: y: labels must be >= 0, got minimum {lo}"
                )
    train_y = data.train_y
    if train_y is not None:
        if train_y.dtype.is_floating_point or train_y.dtype == torch.bool or train_y.dim() != 1:
            raise DataError(f"{src}: train_y: must be 1-D integer labels, got {train_y.dtype}")
        train_y = train_y.to(torch.int64)
        n_cls = handle.num_classes or _output_classes(handle)
        if train_y.numel() and (
            int(train_y.min()) < 0 or (n_cls is not None and int(train_y.max()) >= n_cls)
        ):
            raise DataError(f"{src}: train_y: labels must be in 0..{(n_cls or 0) - 1}")
    return EvalData(
        name=data.name,
        x=out["x"],
        y=y,
        calib_x=out["calib_x"],
        train_x=out.get("train_x"),
        train_y=train_y,
    )


def _output_classes(handle: ModelHandle) -> int | None:
    """Classes of a classifier from one forward pass on the example input ([1, C] output)."""
    with torch.no_grad():
        out = handle.module(handle.example_input)
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        out = out["logits"]  # a transformers ModelOutput
    if isinstance(out, torch.Tensor) and out.dim() == 2:
        return int(out.shape[1])
    return None


def load_model_for_data(
    source: str,
    data: str | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    **kwargs: Any,
) -> ModelHandle:
    """:func:`quantviz.model.load_model`, with the example input taken from the data when
    nothing else tells it: one sample of ``data``'s ``x`` (its shape and dtype).

    ``input_shape`` (with the batch dimension) wins over the data; a sidecar or an exported
    program's own example input wins over both.
    """
    from quantviz.model import InputShapeRequired, load_model

    path = Path(source.partition("::")[0]).expanduser()
    if input_shape is None and data and not data.startswith(SAMPLE_PREFIX) and path.is_dir():
        # a Hugging Face checkpoint: its example input is one sample of the data (token ids)
        from quantviz.model.errors import ModelLoadError
        from quantviz.model.hf import check_sample, read_config

        cfg = read_config(path)
        x = _load_file(Path(data).expanduser()).x[:1]
        try:
            check_sample(source, cfg, x, f"{data}: x")
        except ModelLoadError as exc:
            raise DataError(str(exc)) from None
        return load_model(source, input_shape=tuple(x.shape), input_dtype=x.dtype, **kwargs)
    try:
        return load_model(source, input_shape=input_shape, **kwargs)
    except InputShapeRequired:
        if input_shape is not None or not data:
            raise
        x = load_data(data).x[:1]
    return load_model(source, input_shape=tuple(x.shape), input_dtype=x.dtype, **kwargs)
