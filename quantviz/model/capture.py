"""Activation statistics over calibration batches, in bounded memory.

Per quantizable layer, forward hooks feed its input (and, unless ``outputs=False``, its
output) into :class:`ActivationStats`: exact running min / max / count, mean and std, the
kurtosis (of the histogram's sample), and a
fixed-size histogram (2048 bins by default) whose range grows when new data falls outside
it. Growing merges ``2**k`` old bins into one new bin on a grid aligned with the old one, so
re-binning is exact (no interpolation) and the memory never depends on the number of
batches. Batches larger than ``sample`` values (2^18 by default) feed the histogram a
strided sample at a fixed rate. Percentiles come from the histogram (accurate to one bin
width, plus the sampling error on large batches); ``histogram()`` feeds kl / mse
calibration.

Cost: the old update binned every value in float64 after a full ``isfinite`` pass (about
6-9x the forward pass of an EfficientNet-Lite0-like model for its calibration run, inputs
and outputs); now a few float32 passes (``aminmax`` doubling as the finiteness check, two
reductions) plus the binning of the sample, and the evaluation's calibration observes the
inputs only (the tensors static quantization needs): about 1.2-1.4x the time of the
forward pass alone, i.e. the statistics cost 0.2-0.4 of a forward pass
(``benchmarks/bench_calibration.py``).

:class:`StatsCollector` runs as a generator yielding ``(i, n)`` per batch, so a caller
(GUI worker, CLI progress bar) can stop at any yield; the hooks are removed either way.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from quantviz.model.handle import ModelHandle

__all__ = ["DEFAULT_BINS", "ActivationStats", "LayerStats", "StatsCollector", "capture_stats"]

DEFAULT_BINS = 2048
DEFAULT_SAMPLE = 1 << 18
_CHUNK = 1 << 22  # values binned at a time (bounds the int64 index buffer to 32 MB)


class ActivationStats:
    """Running statistics of every value of one activation tensor across batches."""

    def __init__(self, bins: int = DEFAULT_BINS, sample: int | None = DEFAULT_SAMPLE) -> None:
        if not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins: must be an integer >= 2, got {bins!r}")
        if sample is not None and (not isinstance(sample, int) or sample < 1):
            raise ValueError(f"sample: must be a positive integer or None, got {sample!r}")
        self.bins = bins
        #: values binned per batch at most (the first batch fixes the sampling rate); None:
        #: every value
        self.sample = sample
        self.rate = 1.0  # fraction of the values that go into the histogram
        self._rate_set = False
        self._gen = torch.Generator().manual_seed(0x5EED)
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self._sum = 0.0
        self._sumsq = 0.0
        #: count and raw moment sums (x, x^2, x^3, x^4) of the histogram's sample
        self._moments = [0.0] * 5
        self.nonfinite = 0
        self.counts = np.zeros(bins, dtype=np.int64)
        self.lo = 0.0  # left edge of bin 0
        self.width = 0.0  # bin width; 0 until the first finite value

    # -- updating -------------------------------------------------------------------------
    def update(self, t: torch.Tensor) -> None:
        """Add every element of ``t`` (NaN/inf are counted in ``nonfinite`` and skipped).

        ``count``, ``min``, ``max``, ``mean`` and ``std`` cover every value (``aminmax``,
        whose result also tells whether anything is non-finite, and two float32 reductions
        accumulated in float64); ``kurtosis`` the histogram's sample. The histogram gets a
        strided sample (every ``step``-th value from a seeded random offset, ``step`` coprime
        with 2, 3, 5 and 7 so that it does not alias with the tensor layout) at a fixed
        rate: the first batch sets it to about ``sample / size`` (all values when the batch
        is smaller), so that calibration costs a few passes over the activations, not a
        binning of every value, while every batch is weighted by its size. Bins are computed
        in float32: a value within float32 rounding of an edge may be counted in the
        neighbouring bin.
        """
        t = t.detach()
        if t.numel() == 0:
            return
        t = t.reshape(-1)
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
        if t.device.type != "cpu":
            t = t.cpu()
        lo_t, hi_t = torch.aminmax(t)
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = torch.isfinite(t)
            self.nonfinite += int(t.numel() - int(finite.sum()))
            t = t[finite]
            if t.numel() == 0:
                return
            lo_t, hi_t = torch.aminmax(t)
            lo, hi = float(lo_t), float(hi_t)
        n = t.numel()
        self.count += n
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._cover(lo, hi)
        if not self._rate_set:
            self.rate = 1.0 if self.sample is None else min(1.0, self.sample / n)
            self._rate_set = True
        binned = t
        if self.rate < 1.0:
            step = _coprime_step(int(1.0 / self.rate))
            start = int(torch.randint(step, (1,), generator=self._gen))
            binned = t[start::step]
        inv = 1.0 / self.width
        for i in range(0, n, _CHUNK):
            c = t[i : i + _CHUNK]
            # float32 per chunk (cascade summation), accumulated in float64
            self._sum += float(c.sum())
            self._sumsq += float(torch.dot(c, c))
        for i in range(0, binned.numel(), _CHUNK):
            c = binned[i : i + _CHUNK].contiguous()  # one strided read of the sample
            c2 = c * c  # the sample's raw moments: kurtosis (a few passes over the sample)
            self._moments[0] += c.numel()
            self._moments[1] += float(c.sum())
            self._moments[2] += float(c2.sum())
            self._moments[3] += float(torch.dot(c2, c))
            self._moments[4] += float(torch.dot(c2, c2))
            idx = torch.sub(c, self.lo).mul_(inv).to(torch.int64).clamp_(0, self.bins - 1)
            self.counts += np.bincount(idx.numpy(), minlength=self.bins)

    def _cover(self, lo: float, hi: float) -> None:
        """Grow the histogram range (exactly, by merging bins) to include [lo, hi]."""
        if self.width == 0.0:
            span = hi - lo
            span = max(span, max(abs(lo), abs(hi)) * 1e-6, 1e-12)
            self.width = span / self.bins * (1 + 1e-9)
            self.lo = lo
            return
        hi_edge = self.lo + self.bins * self.width
        if lo >= self.lo and hi < hi_edge:
            return
        # new grid: f (a power of two) old bins per new bin, shifted by m whole old bins,
        # covering the old range and the new data, with the spare room split evenly
        need_lo, need_hi = min(lo, self.lo), max(hi, hi_edge)
        ratio = ((need_hi - need_lo) + self.width) / (self.bins * self.width)
        if ratio >= self.bins:
            # the whole old range fits in less than one new bin: start a fresh grid and put
            # the old counts in the bin holding the old range's centre (within one bin)
            total = self.counts.sum()
            centre = self.lo + self.bins * self.width / 2
            self.lo = need_lo
            self.width = (need_hi - need_lo) / self.bins * (1 + 1e-9)
            self.counts = np.zeros(self.bins, dtype=np.int64)
            idx = min(max(int((centre - self.lo) // self.width), 0), self.bins - 1)
            self.counts[idx] = total
            return
        f = 2
        while self.bins * f * self.width <= (need_hi - need_lo) + self.width:
            f *= 2
        span = self.bins * f * self.width
        m_min = math.ceil((self.lo - need_lo) / self.width)
        m_max = math.floor((self.lo + span - need_hi) / self.width) - 1
        m_mid = round((self.lo - (need_lo - (span - (need_hi - need_lo)) / 2)) / self.width)
        m = min(max(m_mid, m_min), max(m_max, m_min))
        new_lo = self.lo - m * self.width
        old_idx = (m + np.arange(self.bins)) // f
        self.counts = np.bincount(old_idx, weights=self.counts, minlength=self.bins).astype(
            np.int64
        )[: self.bins]
        self.lo = new_lo
        self.width *= f

    # -- reading --------------------------------------------------------------------------
    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        if not self.count:
            return math.nan
        return math.sqrt(max(self._sumsq / self.count - self.mean**2, 0.0))

    @property
    def absmax(self) -> float:
        """``max |x|`` over every value seen (exact)."""
        return max(abs(self.min), abs(self.max)) if self.count else math.nan

    @property
    def kurtosis(self) -> float:
        """Pearson kurtosis ``E[(x - mean)^4] / std^4`` (3 for a Gaussian; large for heavy
        tails, e.g. activation outliers) of the values the histogram sampled — every value
        of a batch of up to ``sample`` values, else the fixed-rate strided sample — from raw
        moment sums (float32 per chunk, accumulated in float64)."""
        n, s1, s2, s3, s4 = self._moments
        if not n:
            return math.nan
        m1, m2, m3, m4 = s1 / n, s2 / n, s3 / n, s4 / n
        var = m2 - m1 * m1
        if var <= 0:
            return math.nan
        c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
        return max(c4, 0.0) / (var * var)

    @property
    def nbytes(self) -> int:
        """Memory held by the histogram (constant)."""
        return int(self.counts.nbytes)

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts[bins] int64, edges[bins + 1] float64)``; copies."""
        edges = self.lo + self.width * np.arange(self.bins + 1, dtype=np.float64)
        return self.counts.copy(), edges

    def percentile(self, q: float | Sequence[float]) -> float | np.ndarray:
        """Percentile(s) ``q`` in [0, 100] from the histogram (linear within a bin).

        Exact at 0 and 100 (the running min / max); otherwise within one bin width.
        """
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if np.any((qs < 0) | (qs > 100)):
            raise ValueError(f"percentile: q must be in 0..100, got {q!r}")
        if not self.count:
            raise ValueError("percentile: no data recorded")
        counts, edges = self.histogram()
        cum = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
        target = qs / 100.0 * cum[-1]
        out = np.interp(target, cum, edges)
        out = np.clip(out, self.min, self.max)
        out[qs == 0] = self.min
        out[qs == 100] = self.max
        return float(out[0]) if np.ndim(q) == 0 else out

    def summary(self) -> dict[str, float]:
        """Plain numbers for display / JSON."""
        p = self.percentile([0.01, 1.0, 50.0, 99.0, 99.99]) if self.count else [math.nan] * 5
        return {
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "p0.01": float(p[0]),
            "p1": float(p[1]),
            "p50": float(p[2]),
            "p99": float(p[3]),
            "p99.99": float(p[4]),
        }


@dataclass
class LayerStats:
    """Input and output activation statistics of one layer."""

    fqn: str
    input: ActivationStats = field(default_factory=ActivationStats)
    output: ActivationStats = field(default_factory=ActivationStats)


def _batch_input(batch: object) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ValueError(f"batches: expected tensors or (x, y) tuples, got {type(batch).__name__}")


class StatsCollector:
    """Collect :class:`LayerStats` for ``layers`` (default: all) of ``handle``.

    ``run(batches)`` is a generator yielding ``(i, n)`` after each batch (``n`` None when the
    batches have no length); ``stats`` holds the statistics gathered so far, also after the
    caller stopped early.
    """

    def __init__(
        self,
        handle: ModelHandle,
        layers: Iterable[str] | None = None,
        bins: int = DEFAULT_BINS,
        *,
        outputs: bool = True,
    ) -> None:
        fqns = list(handle.fqns if layers is None else layers)
        for fqn in fqns:
            handle.layer(fqn)  # KeyError naming an unknown layer
        self.handle = handle
        self.stats: dict[str, LayerStats] = {
            f: LayerStats(f, ActivationStats(bins), ActivationStats(bins)) for f in fqns
        }
        self.outputs = outputs
        self.batches_done = 0

    def run(
        self, batches: Iterable[object], total: int | None = None
    ) -> Generator[tuple[int, int | None], None, dict[str, LayerStats]]:
        """Forward every batch with observing hooks; yields ``(i, n)``; returns ``stats``."""
        if total is None and hasattr(batches, "__len__"):
            total = len(batches)  # type: ignore[arg-type]
        removers = []
        try:
            for fqn, st in self.stats.items():
                removers.append(
                    self.handle.add_hooks(
                        fqn,
                        pre=_observer(st.input),
                        post=_observer(st.output) if self.outputs else None,
                    )
                )
            device = self.handle.example_input.device
            dtype = self.handle.example_input.dtype
            with torch.no_grad():
                for i, batch in enumerate(batches, start=1):
                    x = _batch_input(batch).to(device=device, dtype=dtype)
                    self.handle.module(x)
                    self.batches_done = i
                    yield i, total
        finally:
            for r in removers:
                r()
        return self.stats


def _coprime_step(step: int) -> int:
    """The smallest step >= ``step`` sharing no factor with 2, 3, 5 or 7: a strided sample
    then visits every position of the (typically power-of-two or 7x7) spatial and channel
    layouts, instead of the same few rows / columns."""
    step = max(step, 1)
    while math.gcd(step, 210) != 1:
        step += 1
    return step


def _observer(st: ActivationStats):
    def hook(t: torch.Tensor) -> None:
        st.update(t)

    return hook


def capture_stats(
    handle: ModelHandle,
    batches: Iterable[object],
    *,
    layers: Iterable[str] | None = None,
    total: int | None = None,
    bins: int = DEFAULT_BINS,
) -> Generator[tuple[int, int | None], None, dict[str, LayerStats]]:
    """Generator form of :class:`StatsCollector`: yields ``(i, n)``, returns fqn -> stats.

    ``batches``: tensors or ``(x, y)`` tuples (e.g. ``EvalData.calib_batches()``).
    """
    collector = StatsCollector(handle, layers, bins)
    return (yield from collector.run(batches, total))
