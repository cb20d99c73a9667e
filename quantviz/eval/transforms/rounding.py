"""Better rounding than nearest: AdaRound (Nagel et al. 2020) and GPTQ (Frantar et al. 2022).

Both keep the grid that the spec's calibration fits to the (transformed) float weight —
scale and zero point per tensor, channel or group, expanded to one per element — and change
only which level each weight goes to. A layer is seen as its GEMM: a linear's ``W [O, K]``;
a conv's ``W`` viewed as ``[O, C/groups * kh * kw]`` per group, with the inputs unfolded into
patches (``torch.nn.functional.unfold``). The elements that fix the grid under min/max
calibration (each row's extremes) keep their nearest level, so that a format re-deriving
the grid from the rounded weight (a safetensors / ONNX export) finds the same one.

Calibration inputs are captured once per layer with forward pre-hooks on the float model
(transforms applied): GPTQ accumulates ``H = X^T X`` (``K x K``, float64) without keeping
the inputs; AdaRound keeps at most :data:`ADAROUND_ROWS` sampled input rows per group.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from quantviz.core import QuantSpec, quantize
from quantviz.eval.results import Progress
from quantviz.eval.transforms.context import TransformContext
from quantviz.eval.transforms.state import Transformed, get_module, transformed

__all__ = [
    "ADAROUND_ROWS",
    "Grid",
    "adaround_layer",
    "elementwise_grid",
    "gptq_layer",
    "layer_objective",
    "round_layers",
]

#: Input rows AdaRound keeps per layer group (bounded memory).
ADAROUND_ROWS = 4096
_ZETA, _GAMMA = 1.1, -0.1


@dataclass
class Grid:
    """An elementwise uniform grid: ``q = clamp(round(w * inv) + z, qmin, qmax)``,
    ``w_q = (q - z) * s`` (``s``, ``inv = 1/s``, ``z`` shaped like the weight)."""

    s: torch.Tensor
    inv: torch.Tensor
    z: torch.Tensor
    qmin: int
    qmax: int
    anchor: torch.Tensor  # bool: elements that keep their nearest level
    #: per element, the codes of its row's extremes: AdaRound / GPTQ stay within them, so
    #: a quantizer re-fitting the grid to the written weight finds the same grid
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None
    #: per element, its nearest code as the quantizer computes it (float32 operations)
    code: torch.Tensor | None = None

    def nearest(self, w: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(w * self.inv) + self.z, self.qmin, self.qmax)
        return (q - self.z) * self.s

    def reshape(self, *shape: int) -> Grid:
        return Grid(
            self.s.reshape(shape),
            self.inv.reshape(shape),
            self.z.reshape(shape),
            self.qmin,
            self.qmax,
            self.anchor.reshape(shape),
            None if self.lo is None else self.lo.reshape(shape),
            None if self.hi is None else self.hi.reshape(shape),
            None if self.code is None else self.code.reshape(shape),
        )

    def part(self, i: int) -> Grid:
        """Group ``i`` of a grid reshaped to ``[G, ...]``."""
        return Grid(
            self.s[i],
            self.inv[i],
            self.z[i],
            self.qmin,
            self.qmax,
            self.anchor[i],
            None if self.lo is None else self.lo[i],
            None if self.hi is None else self.hi[i],
            None if self.code is None else self.code[i],
        )

    def bounds(self, anchors: bool = True) -> tuple[Any, Any]:
        """The code bounds to clamp to: the row extremes' codes, or the full range."""
        if anchors and self.lo is not None and self.hi is not None:
            return self.lo, self.hi
        return self.qmin, self.qmax


def elementwise_grid(w: torch.Tensor, spec: QuantSpec) -> Grid:
    """The grid of ``quantize(w, spec)`` per element (float64), with the anchors."""
    if spec.quantizer != "uniform":
        raise ValueError(f"rounding: {spec.rounding} needs the uniform quantizer")
    r = quantize(w.detach().to(torch.float32), spec, metrics=False)
    rv = r.row_view
    f = r.fitted
    scale = f.scale.to(torch.float64).reshape(-1)  # type: ignore[union-attr]
    zp = f.zero_point.to(torch.float64).reshape(-1)  # type: ignore[union-attr]
    rows, k = rv.rows, rv.row_len
    s = rv.from_rows(scale[:, None].expand(rows, k)).to(torch.float64)
    inv = rv.from_rows(
        torch.reciprocal(scale.to(torch.float32)).to(torch.float64)[:, None].expand(rows, k)
    )
    z = rv.from_rows(zp[:, None].expand(rows, k))
    xr = rv.to_rows(w.detach().to(torch.float32))
    anchor = torch.zeros_like(xr, dtype=torch.bool)
    idx = torch.arange(rows)
    anchor[idx, xr.argmax(1)] = True
    anchor[idx, xr.argmin(1)] = True
    qmin, qmax = spec.qrange
    # the codes of each row's extremes, in the float32 operations of the quantizer
    inv32 = torch.reciprocal(scale.to(torch.float32))
    z32 = zp.to(torch.float32)

    def code(v: torch.Tensor) -> torch.Tensor:
        c = torch.clamp(torch.round(v * inv32) + z32, qmin, qmax).to(torch.float64)
        return rv.from_rows(c[:, None].expand(rows, k))

    lo, hi = code(xr.amin(1)), code(xr.amax(1))
    near = torch.clamp(torch.round(xr * inv32[:, None]) + z32[:, None], qmin, qmax)
    return Grid(
        s, inv, z, qmin, qmax, rv.from_rows(anchor), lo, hi, rv.from_rows(near.to(torch.float64))
    )


# -- calibration inputs --------------------------------------------------------------------
def _gemm_inputs(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer input as GEMM rows ``[groups, n, K]`` (float64)."""
    x = x.detach()
    if isinstance(mod, nn.Linear):
        return x.reshape(1, -1, x.shape[-1]).to(torch.float64)
    if isinstance(mod, nn.Conv2d):
        if isinstance(mod.padding, str):
            raise ValueError("rounding: a conv with padding='same'/'valid' is not supported")
        cols = F.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride)
        g = mod.groups
        n, ck, length = cols.shape
        cols = cols.reshape(n, g, ck // g, length).permute(1, 0, 3, 2)
        return cols.reshape(g, n * length, ck // g).to(torch.float64)
    raise ValueError(
        f"rounding: AdaRound and GPTQ support linear and conv2d layers, not {type(mod).__name__}"
    )


def _check_layer(mod: nn.Module, fqn: str, spec: QuantSpec) -> None:
    if not isinstance(mod, nn.Linear | nn.Conv2d):
        raise ValueError(
            f"layer {fqn}: rounding {spec.rounding}: supports linear and conv2d layers, "
            f"not {type(mod).__name__}"
        )
    if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
        raise ValueError(f"layer {fqn}: rounding {spec.rounding}: needs zero padding")


def _capture(
    ctx: TransformContext, state: Transformed, fqns: list[str], need_rows: set[str]
) -> Generator[Progress, None, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Per layer: ``H = sum X^T X`` per group ``[G, K, K]``, and sampled rows for AdaRound."""
    h = ctx.handle
    hess: dict[str, torch.Tensor] = {}
    rows: dict[str, list[torch.Tensor]] = {}
    batches = ctx.batches("rounding")
    per_batch = max(ADAROUND_ROWS // len(batches), 1)
    gen = torch.Generator().manual_seed(0)

    def obs(fqn: str, mod: nn.Module):
        def hook(x: torch.Tensor) -> None:
            xs = _gemm_inputs(mod, x)
            hh = xs.transpose(1, 2) @ xs
            hess[fqn] = hh if fqn not in hess else hess[fqn] + hh
            if fqn in need_rows:
                n = xs.shape[1]
                take = torch.randperm(n, generator=gen)[: min(per_batch, n)]
                rows.setdefault(fqn, []).append(xs[:, take].to(torch.float32))

        return hook

    removers = []
    with transformed(h, state):
        try:
            for f in fqns:
                mod = get_module(h.module, h.layer(f).module_fqn)
                removers.append(h.add_hooks(f, pre=obs(f, mod)))
            for i in ctx.run("rounding"):
                yield Progress(i, len(batches), "capture")
        finally:
            for r in removers:
                r()
    return hess, {f: torch.cat(v, dim=1) for f, v in rows.items()}


# -- the objective --------------------------------------------------------------------------
def layer_objective(w: torch.Tensor, q: torch.Tensor, hess: torch.Tensor) -> float:
    """``||W X - Q X||^2`` summed over the calibration inputs: ``tr(D H D^T)`` per group
    with ``D = W - Q`` as GEMM ``[G, O/G, K]`` and ``H = X^T X`` ``[G, K, K]``."""
    g = hess.shape[0]
    d = (w.to(torch.float64) - q.to(torch.float64)).reshape(g, w.shape[0] // g, -1)
    return float(torch.einsum("gok,gkl,gol->", d, hess, d))


# -- GPTQ ------------------------------------------------------------------------------------
def gptq_layer(
    w: torch.Tensor,
    hess: torch.Tensor,
    grid: Grid,
    *,
    block_size: int = 128,
    damping: float = 0.01,
    act_order: bool = False,
    anchors: bool = True,
) -> torch.Tensor:
    """GPTQ of one GEMM weight ``w [O, K]`` with ``hess = X^T X`` ``[K, K]`` (float64).

    As in the paper's Algorithm 1: dead inputs (zero diagonal) zeroed, damping
    ``damping * mean(diag H)``, optional act-order permutation, the upper Cholesky factor of
    ``H^-1``, blocks of ``block_size`` columns quantized one by one with the error of each
    spread over the rest of its block at once and over later blocks lazily. Returns the
    dequantized weight ``[O, K]`` (float64), every element on ``grid``.
    """
    W = w.to(torch.float64).clone()
    H = hess.to(torch.float64).clone()
    k = W.shape[1]
    s, inv, z = grid.s.clone(), grid.inv.clone(), grid.z.clone()
    anc = grid.anchor.clone() if anchors else torch.zeros_like(grid.anchor)
    near = (grid.code if grid.code is not None else torch.zeros_like(W)).clone()
    qlo, qhi = grid.bounds(anchors)
    if isinstance(qlo, torch.Tensor):
        qlo, qhi = qlo.clone(), qhi.clone()  # type: ignore[union-attr]
    else:
        qlo = torch.full_like(W, float(qlo))
        qhi = torch.full_like(W, float(qhi))
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
        s, inv, z, anc = s[:, perm], inv[:, perm], z[:, perm], anc[:, perm]
        qlo, qhi, near = qlo[:, perm], qhi[:, perm], near[:, perm]
    H += damping * torch.mean(torch.diag(H)) * torch.eye(k, dtype=torch.float64)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        W1 = W[:, i1:i2].clone()
        Err = torch.zeros_like(W1)
        Hb = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            col = W1[:, i]
            qc = torch.clamp(torch.round(col * inv[:, j]) + z[:, j], qlo[:, j], qhi[:, j])
            qc = torch.where(anc[:, j], near[:, j], qc)
            q = (qc - z[:, j]) * s[:, j]
            Q[:, j] = q
            e = (col - q) / Hb[i, i]
            W1[:, i:] -= e[:, None] * Hb[i, i:][None, :]
            Err[:, i] = e
        W[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q


# -- AdaRound --------------------------------------------------------------------------------
def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def adaround_layer(
    w: torch.Tensor,
    x: torch.Tensor,
    grid: Grid,
    *,
    iterations: int = 200,
    reg_weight: float = 0.01,
    lr: float = 1e-2,
    batch_rows: int = 256,
    seed: int = 0,
) -> Generator[int, None, torch.Tensor]:
    """AdaRound of one grouped GEMM weight ``w [G, O, K]`` on inputs ``x [G, n, K]``.

    Learns ``V`` with ``W~ = s * (clamp(floor(W/s) + h(V) + z) - z)``, ``h`` the rectified
    sigmoid, minimising ``||W X - W~ X||^2 / n + lambda * sum(1 - |2h(V) - 1|^beta)`` with Adam;
    ``beta`` anneals from 20 to 2 (cosine) after a 20 % warm-up without the regulariser.
    ``V`` starts where ``h(V)`` is the fractional part of ``W/s``. The result rounds down
    where ``h(V) < 0.5`` and up otherwise: always ``floor`` or ``ceil`` of ``W/s`` (then
    clamped to the code range); anchors keep their nearest level. Yields the iteration
    count every 25 iterations; returns the dequantized ``[G, O, K]`` (float64).
    """
    w = w.to(torch.float32)
    x = x.to(torch.float32)
    s = grid.s.to(torch.float32)
    inv = grid.inv.to(torch.float32)
    z = grid.z.to(torch.float32)
    lo, hi = grid.bounds()
    if isinstance(lo, torch.Tensor):
        lo, hi = lo.to(torch.float32), hi.to(torch.float32)  # type: ignore[union-attr]
    base = torch.floor(w * inv)
    rest = (w * inv - base).clamp(1e-4, 1 - 1e-4)
    v0 = -torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1)
    v = v0.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    y = torch.einsum("gnk,gok->gno", x, w)
    n = x.shape[1]
    gen = torch.Generator().manual_seed(seed)
    warm = int(0.2 * iterations)
    with torch.enable_grad():
        for it in range(iterations):
            idx = torch.randint(n, (min(batch_rows, n),), generator=gen)
            hv = _rect_sigmoid(v)
            q = torch.clamp(base + hv + z, lo, hi)
            wq = (q - z) * s
            xb = x[:, idx]
            loss = (torch.einsum("gnk,gok->gno", xb, wq) - y[:, idx]).pow(2).sum(-1).mean()
            if it >= warm:
                rel = (it - warm) / max(iterations - warm, 1)
                beta = 2 + 0.5 * (20 - 2) * (1 + math.cos(math.pi * rel))
                loss = loss + reg_weight * (1 - (2 * hv - 1).abs().pow(beta)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (it + 1) % 25 == 0:
                yield it + 1
    up = (_rect_sigmoid(v.detach()) >= 0.5).to(torch.float32)
    q = torch.clamp(base + up + z, lo, hi)
    if grid.code is not None:
        near = grid.code.to(torch.float32)
    else:
        near = torch.clamp(torch.round(w * inv) + z, lo, hi)
    q = torch.where(grid.anchor, near, q)
    return ((q - z) * s).to(torch.float64)


# -- driving ---------------------------------------------------------------------------------
def round_layers(
    ctx: TransformContext, state: Transformed, todo: list[tuple[str, QuantSpec]]
) -> Generator[Progress, None, None]:
    """Compute ``state.rounded[(fqn, spec)]`` for every ``(fqn, spec)`` of ``todo``."""
    h = ctx.handle
    for fqn, spec in todo:
        _check_layer(get_module(h.module, h.layer(fqn).module_fqn), fqn, spec)
    fqns = list(dict.fromkeys(f for f, _ in todo))
    need_rows = {f for f, s in todo if s.rounding == "adaround"}
    # bound the Hessians held at once to ~256 MB
    chunks: list[list[str]] = [[]]
    held = 0
    for f in fqns:
        k = h.layer(f).weight_numel // max(h.layer(f).weight_shape[0], 1)
        mod = get_module(h.module, h.layer(f).module_fqn)
        g = getattr(mod, "groups", 1)
        size = g * k * k * 8
        if chunks[-1] and held + size > 256 << 20:
            chunks.append([])
            held = 0
        chunks[-1].append(f)
        held += size
    done = 0
    for chunk in chunks:
        hess, rows = yield from _capture(ctx, state, chunk, need_rows & set(chunk))
        for fqn, spec in [(f, s) for f, s in todo if f in chunk]:
            done += 1
            if fqn not in hess:
                raise ValueError(
                    f"layer {fqn}: rounding {spec.rounding}: no calibration input reached it"
                )
            w = state.weight(h, fqn).detach()
            grid = elementwise_grid(w, spec)
            hs = hess[fqn]
            g = hs.shape[0]
            o = w.shape[0]
            wg = w.reshape(g, o // g, -1).to(torch.float64)
            gg = grid.reshape(g, o // g, wg.shape[2])
            if spec.rounding == "gptq":
                parts = []
                for gi in range(g):
                    sub = gg.part(gi)
                    parts.append(
                        gptq_layer(
                            wg[gi],
                            hs[gi],
                            sub,
                            block_size=spec.gptq_block_size,
                            damping=spec.gptq_damping,
                            act_order=spec.gptq_act_order,
                        )
                    )
                q = torch.stack(parts)
            else:
                ada = adaround_layer(wg, rows[fqn], gg, iterations=spec.adaround_iters)
                while True:
                    try:
                        it = next(ada)
                    except StopIteration as stop:
                        q = stop.value
                        break
                    yield Progress(it, spec.adaround_iters, "adaround")
            out = q.reshape(w.shape).to(w.dtype)
            rtn = quantize(
                w.to(torch.float32), spec.with_(rounding="nearest"), metrics=False
            ).dequantized
            state.rounded[(fqn, spec)] = out
            state.rounding_info[fqn] = {
                "method": spec.rounding,
                "objective": layer_objective(w, out, hs),
                "rtn_objective": layer_objective(w, rtn.to(w.dtype), hs),
            }
            state.note(
                fqn,
                f"{spec.rounding}: ||WX-QX||^2 {state.rounding_info[fqn]['objective']:.4g} "
                f"(nearest {state.rounding_info[fqn]['rtn_objective']:.4g})",
            )
            yield Progress(done, len(todo), spec.rounding)
