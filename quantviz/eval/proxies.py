"""Sensitivity proxies per (layer, candidate weight scheme), ranked against the measured drop.

Every proxy is a generator ``proxy(handle, data, candidates)`` yielding
:class:`~quantviz.eval.results.Progress` (close it to cancel) and returning
``{(fqn, spec): cost}``: a non-negative number, larger = that layer under that scheme hurts
more. :data:`PROXIES` names them:

``mse``
    the weight quantization MSE ``||W - Q(W)||^2 / n`` (no data needed).
``output_sqnr``
    the layer's output noise-to-signal ratio ``sum (y_q - y)^2 / sum y^2`` (``10^(-SQNR/10)``)
    with that layer alone quantized, on the float inputs it receives (one float pass for every
    candidate at once; :func:`quantviz.eval.debug.isolated_errors`).
``kl``
    the output KL(float || quantized) with that layer alone quantized: the KL ablation of
    :mod:`quantviz.eval.sensitivity` — one :func:`~quantviz.eval.evaluate.evaluate` per
    candidate, which also gives the measured truth (:func:`measure`).
``fisher``
    ``sum_i F_i (W_i - Q(W)_i)^2`` with the diagonal empirical Fisher ``F = mean over samples
    of (d loss / d W)^2`` (one sample per backward pass). The loss is the cross-entropy with
    the labels when the data has them; without labels it is the cross-entropy with labels
    drawn from the float model's own softmax (seeded) — the Fisher of the KL to the float
    model's outputs: the KL's gradient is exactly zero at the float weights, its curvature
    (the expected Fisher) is not.
``hessian``
    HAWQ-V2: ``Tr(H_W) / n * ||W - Q(W)||^2`` with the trace of each layer's Hessian block
    estimated by Hutchinson's method: ``E[v^T H v]`` over Rademacher probes ``v``, each a
    Hessian-vector product by double back-propagation (``torch.autograd.grad``). One probe
    drawn over all layers at once gives every layer's block trace (cross-layer terms have
    zero mean). The loss: cross-entropy with labels, else the KL to the float outputs. A
    negative estimate (probe noise, or negative curvature of a model not at a minimum of its
    loss) counts as 0: a cost is never negative.

The measured truth (:func:`measure`) is the drop of the task metric with that layer alone
quantized, the rest float (what :func:`quantviz.eval.sensitivity` measures);
:func:`rank_proxies` runs the chosen proxies and the truth and reports each proxy's Spearman
rank correlation (``scipy.stats.spearmanr``) with the measured drop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from quantviz.core import LayerConfig, ModelConfig, QuantSpec
from quantviz.eval.apply import WeightCache
from quantviz.eval.forward import check_data, model_device
from quantviz.eval.results import Baseline, Progress, json_safe

if TYPE_CHECKING:
    from quantviz.data import EvalData
    from quantviz.model.handle import ModelHandle

__all__ = [
    "GRADIENT_PROXIES",
    "PROXIES",
    "Candidate",
    "ProxyReport",
    "fisher",
    "hessian",
    "hutchinson_traces",
    "kl",
    "measure",
    "mse",
    "output_sqnr",
    "rank_proxies",
]

Candidate = tuple[str, QuantSpec]
ProxyGen = Generator[Progress, None, dict[Candidate, float]]


def _check_candidates(handle: ModelHandle, candidates: Sequence[Candidate]) -> list[Candidate]:
    out = []
    for c in candidates:
        if not (isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], QuantSpec)):
            raise ValueError(f"candidates: expected (layer, QuantSpec) pairs, got {c!r}")
        try:
            handle.layer(c[0])
        except KeyError:
            raise ValueError(f"candidates: {c[0]!r} is not a layer of {handle.name}") from None
        out.append(c)
    if not out:
        raise ValueError("candidates: nothing to rank (no (layer, scheme) pairs)")
    return out


def _entries(
    handle: ModelHandle, candidates: Sequence[Candidate], cache: WeightCache, keep: bool = True
) -> Iterator[tuple[int, Candidate, Any]]:
    for i, (fqn, spec) in enumerate(candidates, start=1):
        try:
            e = cache.get(fqn, spec, handle.quant_weight(fqn), keep=keep)
        except ValueError as exc:
            raise ValueError(f"candidates: {exc} (scheme {spec.short()})") from None
        yield i, (fqn, spec), e


def _candidate_bytes(handle: ModelHandle, candidates: Sequence[Candidate]) -> int:
    """Bytes of every candidate's fake-quantized weight (the weights' own dtype)."""
    return sum(
        int(handle.layer(f).weight_numel) * int(handle.weight(f).element_size())
        for f, _spec in candidates
    )


# ---------------------------------------------------------------------------------------
# weight MSE and output SQNR
# ---------------------------------------------------------------------------------------
def mse(
    handle: ModelHandle,
    data: EvalData | None,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
) -> ProxyGen:
    """Weight quantization MSE of each candidate (``data`` is not used)."""
    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    out: dict[Candidate, float] = {}
    for i, key, e in _entries(handle, cands, cache):
        out[key] = float(e.mse)
        yield Progress(i, len(cands), "mse")
    return out


def output_sqnr(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    batch_size: int = 64,
    max_samples: int | None = 256,
) -> ProxyGen:
    """Noise-to-signal ratio of each layer's output with that layer alone quantized.

    When the candidates' fake-quantized weights together do not fit ``cache``'s budget,
    each is quantized when its layer runs in the float pass and dropped after (as
    :func:`quantviz.eval.debug.debug` streams): never every candidate's weight at once.
    """
    from quantviz.eval.debug import isolated_errors, weight_variants

    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    stream = _candidate_bytes(handle, cands) > cache.max_bytes
    # quantize first: errors name the layer (streamed: checked, not kept)
    for i, _key, _e in _entries(handle, cands, cache, keep=not stream):
        yield Progress(i, len(cands), "quantize")
    variants = weight_variants(handle, cands, cache, stream=stream)
    _order, errs = yield from isolated_errors(
        handle, data, variants, batch_size=batch_size, max_samples=max_samples, stage="output_sqnr"
    )
    out: dict[Candidate, float] = {}
    for key in cands:
        e = errs.get(key)
        out[key] = math.nan if e is None else 10.0 ** (-e.sqnr_db / 10.0)
    return out


# ---------------------------------------------------------------------------------------
# measured truth and the KL ablation
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """One layer alone quantized: the task metric, its drop from float, the output KL."""

    value: float
    drop: float
    kl: float


def measure(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    baseline: Baseline | None = None,
    batch_size: int = 256,
) -> Generator[Progress, None, dict[Candidate, Measured]]:
    """Each candidate's layer alone at its scheme, the rest float (as
    :func:`quantviz.eval.sensitivity` does): metric, drop and output KL."""
    from quantviz.eval.evaluate import compute_baseline, evaluate
    from quantviz.eval.sweep_common import FLOAT

    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    if baseline is None or not baseline.matches(handle.module, data.x):
        gen = compute_baseline(handle, data, batch_size=batch_size)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                baseline = stop.value
                break
            yield Progress(0, len(cands), "measure")
    assert baseline is not None
    out: dict[Candidate, Measured] = {}
    for i, (fqn, spec) in enumerate(cands, start=1):
        cfg = ModelConfig(default=FLOAT, overrides=((fqn, LayerConfig(weight=spec)),))
        ev = evaluate(handle, data, cfg, cache=cache, batch_size=batch_size, baseline=baseline)
        while True:
            try:
                next(ev)
            except StopIteration as stop:
                r = stop.value
                break
            yield Progress(i - 1, len(cands), "measure")
        out[(fqn, spec)] = Measured(r.value, baseline.value - r.value, float(r.kl or 0.0))
        yield Progress(i, len(cands), "measure")
    return out


def kl(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    baseline: Baseline | None = None,
    batch_size: int = 256,
) -> ProxyGen:
    """The output KL with each candidate's layer alone quantized (KL ablation)."""
    m = yield from measure(
        handle, data, candidates, cache=cache, baseline=baseline, batch_size=batch_size
    )
    return {k: v.kl for k, v in m.items()}


# ---------------------------------------------------------------------------------------
# gradients: Fisher and Hessian trace
# ---------------------------------------------------------------------------------------
@contextmanager
def _with_grad(params: Sequence[torch.Tensor]) -> Iterator[None]:
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


def _logits(handle: ModelHandle, x: torch.Tensor) -> torch.Tensor:
    from quantviz.eval.forward import _output

    out = _output(handle.module(x.to(model_device(handle))))
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() > 2:  # [N, C, *rest] -> [N * rest, C], as the metrics read it
        out = out.movedim(1, -1).reshape(-1, out.shape[1])
    return out.float()


def _layer_params(handle: ModelHandle, fqns: Sequence[str]) -> dict[str, torch.Tensor]:
    return {f: handle.weight(f) for f in fqns}


def _unique(params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for p in params.values():
        seen.setdefault(id(p), p)
    return list(seen.values())


def _samples(data: EvalData, max_samples: int | None) -> int:
    check_data(data)
    n = int(data.x.shape[0])
    if max_samples is not None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples: must be a positive integer, got {max_samples!r}")
        n = min(n, max_samples)
    return n


def fisher_diagonal(
    handle: ModelHandle,
    data: EvalData,
    fqns: Sequence[str],
    *,
    max_samples: int | None = 128,
    seed: int = 0,
) -> Generator[Progress, None, dict[str, torch.Tensor]]:
    """The diagonal empirical Fisher of each layer's weight (one sample per backward)."""
    n = _samples(data, max_samples)
    params = _layer_params(handle, fqns)
    uniq = _unique(params)
    acc = {id(p): torch.zeros_like(p, dtype=torch.float64) for p in uniq}
    gen = torch.Generator().manual_seed(seed)
    with _with_grad(uniq):
        for i in range(n):
            logits = _logits(handle, data.x[i : i + 1])
            if data.y is not None and logits.shape[0] == 1:
                y = data.y[i : i + 1].to(logits.device)
            else:  # the float model's own predictive distribution
                probs = torch.softmax(logits.detach().double().cpu(), dim=-1)
                y = torch.multinomial(probs, 1, generator=gen).flatten().to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, uniq, allow_unused=True)
            for p, g in zip(uniq, grads, strict=True):
                if g is not None:
                    acc[id(p)] += g.detach().double() ** 2
            yield Progress(i + 1, n, "fisher")
    return {f: acc[id(p)] / n for f, p in params.items()}


def fisher(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    max_samples: int | None = 128,
    seed: int = 0,
) -> ProxyGen:
    """``sum F * (W - Q(W))^2`` per candidate (see the module docstring)."""
    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    fqns = list(dict.fromkeys(f for f, _ in cands))
    fd = yield from fisher_diagonal(handle, data, fqns, max_samples=max_samples, seed=seed)
    out: dict[Candidate, float] = {}
    for _i, key, e in _entries(handle, cands, cache):
        w = handle.weight(key[0]).detach().double()
        d2 = (handle.layer(key[0]).to_stored(e.dequantized).double() - w) ** 2
        out[key] = float((fd[key[0]] * d2).sum())
    return out


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of ``Tr(H)`` of one layer's block: mean and standard error over
    the probes, and the weight's element count ``n``."""

    trace: float
    stderr: float
    n: int
    probes: int
    samples: list[float] = field(default_factory=list, repr=False, compare=False)


def hutchinson_traces(
    handle: ModelHandle,
    data: EvalData,
    fqns: Sequence[str] | None = None,
    *,
    probes: int = 32,
    max_samples: int | None = 128,
    batch_size: int = 128,
    seed: int = 0,
) -> Generator[Progress, None, dict[str, TraceEstimate]]:
    """Per-layer Hessian block traces of the loss by Hutchinson's method; yields per probe.

    The loss is the mean cross-entropy with the labels (or the mean KL to the float model's
    outputs without labels) over the first ``max_samples`` samples of ``data.x``, in batches
    of ``batch_size``; each probe is one Rademacher vector over every layer's weight and one
    Hessian-vector product per batch.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes: must be a positive integer, got {probes!r}")
    n = _samples(data, max_samples)
    fqns = list(handle.fqns if fqns is None else fqns)
    params = _layer_params(handle, fqns)
    uniq = _unique(params)
    per_probe: dict[int, list[float]] = {id(p): [0.0] * probes for p in uniq}
    spans = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]

    def probe(k: int) -> list[torch.Tensor]:  # probe k is the same vector in every batch
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        return [
            (torch.randint(0, 2, p.shape, generator=g, dtype=torch.int8) * 2 - 1)
            .to(p.dtype)
            .to(p.device)
            for p in uniq
        ]

    step = 0
    with _with_grad(uniq):
        for a, b in spans:  # one forward and gradient graph per batch, reused by every probe
            logits = _logits(handle, data.x[a:b])
            if data.y is not None and logits.shape[0] == b - a:
                loss = torch.nn.functional.cross_entropy(logits, data.y[a:b].to(logits.device))
            else:
                ref = torch.log_softmax(logits.detach(), dim=-1)
                lq = torch.log_softmax(logits, dim=-1)
                loss = (ref.exp() * (ref - lq)).sum(dim=-1).mean()
            grads = torch.autograd.grad(loss, uniq, create_graph=True, allow_unused=True)
            gs = [
                g if g is not None else torch.zeros_like(p)
                for g, p in zip(grads, uniq, strict=True)
            ]
            w = (b - a) / n
            for k in range(probes):
                vs = probe(k)
                dot = sum((g * v).sum() for g, v in zip(gs, vs, strict=True))
                if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                    hv: Sequence[torch.Tensor | None] = [None] * len(uniq)
                else:
                    hv = torch.autograd.grad(dot, uniq, retain_graph=True, allow_unused=True)
                for h, v, p in zip(hv, vs, uniq, strict=True):
                    if h is not None:
                        per_probe[id(p)][k] += w * float((h.detach() * v).sum())
                step += 1
                yield Progress(step, len(spans) * probes, "hessian")
            del grads, gs, loss, logits
    out: dict[str, TraceEstimate] = {}
    for f, p in params.items():
        s = per_probe[id(p)]
        mean = sum(s) / len(s)
        var = sum((x - mean) ** 2 for x in s) / (len(s) - 1) if len(s) > 1 else math.nan
        out[f] = TraceEstimate(mean, math.sqrt(var / len(s)), p.numel(), len(s), s)
    return out


def hessian(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    *,
    cache: WeightCache | None = None,
    probes: int = 32,
    max_samples: int | None = 128,
    seed: int = 0,
) -> ProxyGen:
    """HAWQ-V2 ``Tr(H) / n * ||W - Q(W)||^2`` per candidate."""
    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    fqns = list(dict.fromkeys(f for f, _ in cands))
    tr = yield from hutchinson_traces(
        handle, data, fqns, probes=probes, max_samples=max_samples, seed=seed
    )
    out: dict[Candidate, float] = {}
    for _i, key, e in _entries(handle, cands, cache):
        t = tr[key[0]]
        w = handle.weight(key[0]).detach().double()
        dw2 = float(((handle.layer(key[0]).to_stored(e.dequantized).double() - w) ** 2).sum())
        out[key] = max(t.trace, 0.0) / t.n * dw2
    return out


#: proxy name -> generator ``(handle, data, candidates) -> {(fqn, spec): cost}``
PROXIES: dict[str, Callable[..., ProxyGen]] = {
    "mse": mse,
    "output_sqnr": output_sqnr,
    "kl": kl,
    "fisher": fisher,
    "hessian": hessian,
}

#: the proxies that back-propagate through the model (eager PyTorch modules only)
GRADIENT_PROXIES = ("fisher", "hessian")


# ---------------------------------------------------------------------------------------
# ranking against the truth
# ---------------------------------------------------------------------------------------
@dataclass
class ProxyReport:
    """Each proxy's cost per candidate, the measured drop and each proxy's Spearman rho."""

    metric: str
    baseline: float
    candidates: list[Candidate]
    measured: dict[Candidate, Measured]
    values: dict[str, dict[Candidate, float]]
    spearman: dict[str, float]
    seconds: dict[str, float]

    def ranking(self, proxy: str) -> list[Candidate]:
        """Candidates by the proxy's cost, largest (most sensitive) first."""
        v = self.values[proxy]
        return sorted(self.candidates, key=lambda c: -_finite(v[c]))

    def by_drop(self) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: (-self.measured[c].drop, -self.measured[c].kl))

    def to_dict(self) -> dict[str, Any]:
        rank = {p: {c: i + 1 for i, c in enumerate(self.ranking(p))} for p in self.values}
        drop_rank = {c: i + 1 for i, c in enumerate(self.by_drop())}
        return json_safe(
            {
                "metric": self.metric,
                "baseline": self.baseline,
                "proxies": list(self.values),
                "spearman": self.spearman,
                "seconds": self.seconds,
                "layers": [
                    {
                        "fqn": c[0],
                        "scheme": c[1].short(),
                        "value": self.measured[c].value,
                        "drop": self.measured[c].drop,
                        "rank_by_drop": drop_rank[c],
                        "proxies": {p: self.values[p][c] for p in self.values},
                        "ranks": {p: rank[p][c] for p in self.values},
                    }
                    for c in self.candidates
                ],
            }
        )


def _finite(x: float) -> float:
    return x if math.isfinite(x) else (math.inf if x > 0 else -math.inf)


def spearman(proxy: Sequence[float], truth: Sequence[float]) -> float:
    """``scipy.stats.spearmanr`` of the two (NaN when either is constant)."""
    from scipy.stats import spearmanr

    if len(proxy) < 2 or len(set(truth)) < 2 or len(set(proxy)) < 2:
        return math.nan
    return float(spearmanr(proxy, truth).statistic)


def rank_proxies(
    handle: ModelHandle,
    data: EvalData,
    candidates: Sequence[Candidate],
    proxies: Sequence[str] = tuple(PROXIES),
    *,
    cache: WeightCache | None = None,
    baseline: Baseline | None = None,
    batch_size: int = 256,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Generator[Progress, None, ProxyReport]:
    """Run ``proxies`` and the measured truth on ``candidates``; yields progress with
    ``point`` / ``points`` = the step (truth first, then each proxy) of all steps.
    ``options`` passes keyword arguments to a proxy, e.g. ``{"hessian": {"probes": 64}}``."""
    import time

    unknown = [p for p in proxies if p not in PROXIES]
    if unknown:
        raise ValueError(f"proxy: unknown {', '.join(unknown)} (choose from {', '.join(PROXIES)})")
    grads = [p for p in proxies if p in GRADIENT_PROXIES]
    if grads and handle.flavour == "onnx":
        raise ValueError(
            f"{handle.name}: proxy {', '.join(grads)}: needs gradients, which a model run by "
            "onnxruntime does not give (rank the others: --proxy "
            f"{','.join(p for p in PROXIES if p not in GRADIENT_PROXIES)})"
        )
    cands = _check_candidates(handle, candidates)
    cache = cache if cache is not None else WeightCache()
    steps = 1 + len(proxies)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    if baseline is None or not baseline.matches(handle.module, data.x):
        from quantviz.eval.evaluate import compute_baseline

        gen = compute_baseline(handle, data, batch_size=batch_size)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                baseline = stop.value
                break
            yield Progress(0, 1000, "measure", 0, steps)
    assert baseline is not None
    measured = yield from _relay(
        measure(handle, data, cands, cache=cache, baseline=baseline, batch_size=batch_size),
        0,
        steps,
        "measure",
    )
    seconds["measure"] = time.perf_counter() - t
    values: dict[str, dict[Candidate, float]] = {}
    for k, name in enumerate(proxies, start=1):
        t = time.perf_counter()
        if name == "kl":  # the truth's runs already measured it
            values[name] = {c: measured[c].kl for c in cands}
        else:
            fn = PROXIES[name]
            kw = dict((options or {}).get(name, {}))
            pgen = fn(handle, data, cands, cache=cache, **kw)
            values[name] = yield from _relay(pgen, k, steps, name)
        seconds[name] = time.perf_counter() - t
        yield Progress(1000, 1000, name, k, steps)
    drops = [measured[c].drop for c in cands]
    rho = {p: spearman([_finite(v[c]) for c in cands], drops) for p, v in values.items()}
    return ProxyReport(baseline.metric, baseline.value, cands, measured, values, rho, seconds)


def _relay(
    gen: Generator[Any, None, Any], point: int, points: int, stage: str
) -> Generator[Progress, None, Any]:
    """Relay ``gen``'s progress as step ``point`` of ``points`` named ``stage``, in
    thousandths that never decrease (a step's own sub-stages each start from zero)."""
    best = 0
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            done = int(1000 * p.done / p.total) if p.total else 1000
            best = max(best, done)
            yield Progress(best, 1000, stage, point, points)
    finally:
        gen.close()
