"""What the activation panel shows of one layer's input: histogram, calibrated range, grid.

Computed from the calibration statistics (:mod:`quantviz.model.capture`) and the layer's
activation spec with the same fitting the evaluation uses
(:func:`quantviz.eval.apply.fit_static`), so the panel shows exactly the grid an evaluation
applies. Qt-free; the GUI's activation view only draws an :class:`ActivationData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantviz.core.spec import QuantSpec

__all__ = ["MAX_BARS", "ActivationData", "activation_data", "rebin"]

MAX_BARS = 128


def integer_input(layer: Any) -> bool:
    """Whether a layer's input is integer ids (an embedding's token ids): evaluation passes
    integer inputs through, so an activation scheme never applies to it."""
    return getattr(layer, "kind", None) == "embedding"


def rebin(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim empty tails and merge bins down to at most :data:`MAX_BARS` for display."""
    nz = np.nonzero(counts)[0]
    if nz.size == 0:
        return counts[:1].astype(float), edges[:2]
    counts = counts[nz[0] : nz[-1] + 1]
    edges = edges[nz[0] : nz[-1] + 2]
    f = int(np.ceil(len(counts) / MAX_BARS))
    if f > 1:
        pad = (-len(counts)) % f
        counts = np.concatenate([counts, np.zeros(pad, counts.dtype)]).reshape(-1, f).sum(1)
        edges = np.concatenate([edges[::f], edges[-1:]]) if pad else edges[::f]
        edges = edges[: len(counts) + 1]
        if len(edges) < len(counts) + 1:
            edges = np.append(edges, edges[-1] + (edges[-1] - edges[-2]))
    return counts.astype(float), edges


@dataclass
class ActivationData:
    """One layer's input activations as the panel shows them.

    ``state`` is ``"ok"`` (statistics shown), ``"no-layer"``, ``"collecting"`` (statistics
    not there yet), ``"unsupported"`` (the model cannot be hooked: ``message`` says why) or
    ``"missing"``. With statistics: ``counts``/``edges`` (display bins), ``count`` (values
    seen), ``vmin``/``vmax``; with a static spec: ``levels``, ``clip`` and
    ``clipped_fraction`` (of the calibration values beyond the range); ``error`` when the
    spec cannot be fitted. ``absmax`` / ``kurtosis``: of every value seen (exact).

    ``after``: the same layer's input in the model after the configuration's transforms
    (captured under them, :func:`quantviz.eval.before_after.transformed_activations`),
    with the grid an evaluation of that configuration fits to it; ``label`` names what it
    is ("after cle+smoothquant"); ``after_state`` says why there is none
    (``"none"``: the config has no transforms; ``"pending"``: not captured yet).
    """

    fqn: str
    state: str
    message: str = ""
    spec: QuantSpec | None = None
    counts: np.ndarray | None = None
    edges: np.ndarray | None = None
    count: int = 0
    vmin: float = 0.0
    vmax: float = 0.0
    levels: np.ndarray | None = None
    clip: tuple[float, float] | None = None
    clipped_fraction: float = 0.0
    error: str = ""
    absmax: float = 0.0
    kurtosis: float = float("nan")
    after: ActivationData | None = None
    label: str = ""
    after_state: str = "none"


def activation_data(
    fqn: str | None,
    stats: Any,
    spec: QuantSpec | None,
    *,
    collecting: bool = False,
    unsupported: str = "",
) -> ActivationData:
    """The panel's data for layer ``fqn`` given its ``stats`` (``LayerStats`` or None)."""
    if fqn is None:
        return ActivationData("", "no-layer", "Select a layer.")
    if unsupported:
        return ActivationData(fqn, "unsupported", unsupported, spec)
    if stats is None or stats.input.count == 0:
        if collecting:
            return ActivationData(fqn, "collecting", "Calibration statistics are being collected…")
        return ActivationData(fqn, "missing", "No calibration statistics for this layer.", spec)
    st = stats.input
    counts, edges = rebin(*st.histogram())
    out = ActivationData(
        fqn, "ok", "", spec, counts, edges, int(st.count), float(st.min), float(st.max)
    )
    out.absmax, out.kurtosis = float(st.absmax), float(st.kurtosis)
    if spec is None or spec.dynamic:
        return out
    from quantviz.eval.apply import fit_static

    try:
        fq = fit_static(fqn, spec, stats)
    except ValueError as exc:
        out.error = str(exc)
        return out
    lo, hi = fq.clip_range
    out.levels = fq.levels.double().numpy()
    out.clip = (lo, hi)
    raw_counts, raw_edges = st.histogram()
    raw_counts = np.asarray(raw_counts, dtype=float)
    beyond = raw_counts[(raw_edges[:-1] < lo) | (raw_edges[1:] > hi)].sum()
    out.clipped_fraction = float(beyond / max(raw_counts.sum(), 1.0))
    return out
