"""What the inspector shows of one layer's weights: histograms, channel ranges, grids, errors.

Qt-free: the GUI's histogram and compare views draw :class:`HistData` and never compute
numbers themselves. :func:`layer_view` builds it from a weight tensor and a spec; the float
parts (whole-tensor histogram, per-row min/max, the shown row's histogram) never change for
a tensor, so a :class:`LayerViewCache` keeps them.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from quantviz.core.metrics import histogram
from quantviz.core.quantization import quantize
from quantviz.core.quantizers.base import kernel_threads, row_view
from quantviz.core.spec import BLOCK_FORMATS, QuantSpec

__all__ = [
    "HIST_BINS",
    "ROW_BINS",
    "HistData",
    "LayerViewCache",
    "Quantized",
    "comparison_spec",
    "layer_view",
]

#: at most this many bins for a whole tensor / one channel or group
HIST_BINS = 256
ROW_BINS = 128


@dataclass
class Quantized:
    """One quantizer's outcome for the displayed layer/row."""

    spec: QuantSpec
    levels: np.ndarray  # levels of the shown row
    clip: tuple[float, float]
    mse: float
    sqnr_db: float
    clipped_fraction: float
    bits_per_value: float
    rows: int


@dataclass
class HistData:
    """Everything a view draws for one layer, computed by :func:`layer_view`."""

    fqn: str
    counts: np.ndarray
    edges: np.ndarray
    channel: int  # -1: the whole tensor
    rows: int
    row_kind: str  # "channel" / "group" / ""
    chan_min: np.ndarray
    chan_max: np.ndarray
    main: Quantized | None = None
    compare: Quantized | None = None
    error: str = ""
    compare_error: str = ""
    numel: int = 0
    spec: QuantSpec | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LayerViewCache:
    """Float histograms and per-channel ranges per (layer, tensor, version, row view).

    The tensor is held weakly and checked on every hit, so a new tensor that happens to
    reuse a freed one's ``id`` never gets its histogram. Thread-safe (views fill it from
    workers and the GUI thread).
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._d: OrderedDict[tuple, tuple[weakref.ref, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, w: torch.Tensor, key: tuple, make: Callable[[], Any]) -> Any:
        full = (id(w), w._version, *key)
        with self._lock:
            hit = self._d.get(full)
            if hit is not None and hit[0]() is w:
                self._d.move_to_end(full)
                return hit[1]
        value = make()
        with self._lock:
            self._d[full] = (weakref.ref(w), value)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def comparison_spec(spec: QuantSpec, quantizer: str) -> QuantSpec:
    """``spec`` with another quantizer, keeping bits and granularity where they apply.

    The non-uniform grids are sign-symmetric and have no restricted range; log2 needs at
    least 2 bits. A block format (MX, NVFP4) brings its own blocks and scale rule.
    """
    bits = max(spec.bits, 2) if quantizer == "log2" else spec.bits
    if quantizer in BLOCK_FORMATS:  # the format's own blocks and scale rule
        return spec.with_(
            quantizer=quantizer,
            granularity="per_group",
            group_size=BLOCK_FORMATS[quantizer],
            calibration="minmax",
            restricted_range=False,
            symmetric=True,
        )
    if spec.quantizer in BLOCK_FORMATS:  # back from a block format: keep its blocks
        spec = spec.with_(quantizer="uniform")
    return spec.with_(
        quantizer=quantizer,
        bits=bits,
        restricted_range=False,
        symmetric=spec.symmetric if quantizer == "uniform" else True,
    )


def _quantized(w: torch.Tensor, spec: QuantSpec, channel: int) -> Quantized:
    r = quantize(w, spec)
    per_tensor = r.row_view.granularity == "per_tensor"
    rows = 1 if per_tensor else r.row_view.rows
    if per_tensor:
        row_lv = r.levels
        lo, hi = float(r.clip_min), float(r.clip_max)
    else:
        c = min(max(channel, 0), rows - 1)
        row_lv = r.row_levels(c)  # one row: the [R, L] table of a large layer is gigabytes
        lo, hi = float(r.clip_min.reshape(-1)[c]), float(r.clip_max.reshape(-1)[c])
    return Quantized(
        spec=spec,
        levels=row_lv.detach().to(dtype=torch.float64).numpy(),
        clip=(lo, hi),
        mse=r.mse,
        sqnr_db=r.sqnr_db,
        clipped_fraction=r.clipped_fraction,
        bits_per_value=r.bits_per_value,
        rows=rows,
    )


def _bins(n: int, most: int) -> int:
    """Bins for ``n`` values: about 2 sqrt(n), between 16 and ``most``."""
    return int(min(most, max(16, 2 * math.sqrt(n))))


def _np_hist(x: torch.Tensor, most: int) -> tuple[np.ndarray, np.ndarray]:
    c, e = histogram(x, _bins(x.numel(), most))  # streamed over row blocks, exact
    return c.numpy(), e.numpy()


def layer_view(
    fqn: str,
    w: torch.Tensor,
    spec: QuantSpec | None,
    compare: str | None,
    channel: int,
    cache: LayerViewCache | None = None,
) -> HistData:
    """Histogram, grid(s) and numbers of weight tensor ``w`` of layer ``fqn``.

    ``channel`` picks the row (channel or group) shown for per-channel / per-group specs
    (-1: the whole tensor). ``compare`` names a second quantizer drawn on the same
    histogram (see :func:`comparison_spec`). A spec that cannot apply to ``w`` comes back
    as ``error`` / ``compare_error`` text rather than an exception.
    """
    cache = cache if cache is not None else LayerViewCache()
    src = w  # the caches key on the caller's tensor: ``detach()`` is a new object each call
    w = w.detach()

    def whole() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        w2 = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
        # in the tensor's own dtype (exact; no float32 copy of a 16-bit layer);
        # aminmax(dim) is ~10x slower
        with kernel_threads(w2.numel()):
            mn, mx = torch.amin(w2, dim=1).float(), torch.amax(w2, dim=1).float()
        return (*_np_hist(w, HIST_BINS), mn.numpy(), mx.numpy())

    counts, edges, cmin, cmax = cache.get(src, (fqn,), whole)
    rows, kind = 1, ""
    rv = None
    if spec is not None and spec.granularity != "per_tensor":
        try:
            rv = row_view(tuple(w.shape), spec)
            rows = rv.rows
            kind = "channel" if spec.granularity == "per_channel" else "group"
        except ValueError:
            rows = 1
    ch = -1 if rows == 1 else min(channel, rows - 1)
    if ch >= 0 and rv is not None:
        view = rv
        counts, edges = cache.get(src, (fqn, view, ch), lambda: _np_hist(view.row(w, ch), ROW_BINS))
    out = HistData(fqn, counts, edges, ch, rows, kind, cmin, cmax, numel=int(w.numel()), spec=spec)
    if spec is None:
        return out
    try:
        out.main = _quantized(src, spec, ch)
    except ValueError as exc:
        out.error = str(exc)
        return out
    if compare and compare != spec.quantizer:
        try:
            out.compare = _quantized(src, comparison_spec(spec, compare), ch)
        except ValueError as exc:
            out.compare_error = str(exc)
    return out
