"""A self-contained HTML report: trade-off plot, per-layer table and SQNR chart, config.

Everything is inline (CSS, SVG charts drawn here, PNG images as base64 ``<img>``): the file
opens anywhere with no network and no other files. Table rows carry ``data-fqn``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantviz.core.spec import ModelConfig
from quantviz.io.atomic import atomic_write_text

if TYPE_CHECKING:
    from quantviz.eval.results import EvalResult
    from quantviz.io.exporters import ExportResult
    from quantviz.model.handle import ModelHandle

__all__ = ["export_report", "layer_rows", "render_report", "sqnr_chart_svg", "tradeoff_svg"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1000px;
color:#222;background:#fff}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em}
.muted{color:#777}.chart{margin:.5em 0}img{max-width:100%;border:1px solid #eee}
svg text{font-size:11px;fill:#333}
"""

_W, _H, _M = 640, 360, 56  # chart size and margin


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt_bytes(n: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _fmt_sqnr(v: float | None) -> str:
    if v is None:
        return "float"
    return "inf" if math.isinf(v) else f"{v:.2f}"


def layer_rows(handle: ModelHandle, config: ModelConfig) -> list[dict[str, Any]]:
    """Per layer: fqn, kind, scheme, bytes, weight SQNR in dB (None when kept float)."""
    from quantviz.core import quantize
    from quantviz.core.memory import layer_bytes

    rows = []
    for lay in handle.layers:
        lc = config.resolve(lay.fqn)
        w = handle.quant_weight(lay.fqn)
        sqnr = None
        if lc.weight is not None:
            try:
                sqnr = quantize(w.detach().cpu(), lc.weight).sqnr_db
            except ValueError as exc:
                raise ValueError(f"layer {lay.fqn}: weight: {exc}") from None
        rows.append(
            {
                "fqn": lay.fqn,
                "kind": lay.kind,
                "scheme": lc.short(),
                "bytes": layer_bytes(lay, lc, weight_dtype_bytes=w.element_size()),
                "sqnr_db": sqnr,
            }
        )
    return rows


# -- charts ----------------------------------------------------------------------------------
def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _axes(
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    xlabel: str,
    ylabel: str,
    xfmt: Any,
    yfmt: Any,
    xlog: bool = False,
) -> tuple[list[str], Any, Any]:
    def sx(v: float) -> float:
        if xlog:
            v, a, b = math.log10(v), math.log10(x0), math.log10(x1)
        else:
            a, b = x0, x1
        return _M + (v - a) / ((b - a) or 1.0) * (_W - 2 * _M)

    def sy(v: float) -> float:
        return _H - _M + -(v - y0) / ((y1 - y0) or 1.0) * (_H - 2 * _M)

    parts = [
        f'<rect x="{_M}" y="{_M}" width="{_W - 2 * _M}" height="{_H - 2 * _M}" '
        'fill="none" stroke="#bbb"/>'
    ]
    if xlog:
        xt = [10.0**e for e in range(math.ceil(math.log10(x0)), math.floor(math.log10(x1)) + 1)]
        xt = xt or [x0, x1]
    else:
        xt = _ticks(x0, x1)
    for t in xt:
        parts.append(
            f'<text x="{sx(t):.1f}" y="{_H - _M + 16}" text-anchor="middle">{_esc(xfmt(t))}</text>'
        )
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{_M}" x2="{_W - _M}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
            f'<text x="{_M - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_esc(yfmt(t))}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 12}" text-anchor="middle">{_esc(xlabel)}</text>'
        f'<text x="14" y="{_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_H / 2})">{_esc(ylabel)}</text>'
    )
    return parts, sx, sy


def tradeoff_svg(results: Sequence[EvalResult], *, chosen: str | None = None) -> str:
    """Size vs metric of ``results``: points, the Pareto front and the float baseline."""
    from quantviz.eval.pareto import pareto

    if not results:
        return ""
    pts = [r for r in results if r.model_bytes > 0 and math.isfinite(r.value)]
    if not pts:
        return ""
    base = pts[0].baseline
    fb = max(r.float_bytes for r in pts)
    xs = [r.model_bytes for r in pts] + [fb]
    ys = [r.value for r in pts] + [base]
    x0, x1 = min(xs) / 1.3, max(xs) * 1.3
    pad = (max(ys) - min(ys)) * 0.08 or 0.05
    y0, y1 = min(ys) - pad, max(ys) + pad
    metric = pts[0].metric
    pct = metric in ("accuracy", "top1_agreement")
    parts, sx, sy = _axes(
        x0,
        x1,
        y0,
        y1,
        "model size (bytes, log scale)",
        metric,
        _fmt_bytes,
        (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.3g}"),
        xlog=True,
    )
    parts.append(
        f'<line class="baseline" x1="{_M}" x2="{_W - _M}" y1="{sy(base):.1f}" '
        f'y2="{sy(base):.1f}" stroke="#888" stroke-dasharray="5,4"/>'
        f'<text x="{_W - _M - 4}" y="{sy(base) - 5:.1f}" text-anchor="end">float baseline</text>'
        f'<circle cx="{sx(fb):.1f}" cy="{sy(base):.1f}" r="5" fill="#888"><title>float model'
        f"</title></circle>"
    )
    front = sorted(pareto(pts), key=lambda r: r.model_bytes)
    if len(front) > 1:
        d = " ".join(f"{sx(r.model_bytes):.1f},{sy(r.value):.1f}" for r in front)
        parts.append(f'<polyline class="pareto" points="{d}" fill="none" stroke="#d62728"/>')
    on_front = {id(r) for r in front}
    for r in pts:
        fill = "#d62728" if id(r) in on_front else "#1f77b4"
        ring = ' stroke="#000" stroke-width="2"' if chosen and r.name == chosen else ""
        parts.append(
            f'<circle class="point" cx="{sx(r.model_bytes):.1f}" cy="{sy(r.value):.1f}" r="4" '
            f'fill="{fill}"{ring}><title>{_esc(r.name or "config")}: {r.value:.4g}, '
            f"{_esc(_fmt_bytes(r.model_bytes))}</title></circle>"
        )
    return (
        f'<svg class="chart" id="tradeoff" xmlns="http://www.w3.org/2000/svg" width="{_W}" '
        f'height="{_H}" viewBox="0 0 {_W} {_H}">' + "".join(parts) + "</svg>"
    )


def sqnr_chart_svg(rows: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars: weight SQNR (dB) per layer (float layers and inf shown as labels)."""
    if not rows:
        return ""
    finite = [
        r["sqnr_db"] for r in rows if r["sqnr_db"] is not None and math.isfinite(r["sqnr_db"])
    ]
    top = max([*finite, 1.0]) * 1.1
    bar_h, label_w = 18, 160
    h = _M + len(rows) * (bar_h + 6)
    width = _W - label_w - 60
    parts = []
    for i, r in enumerate(rows):
        y = 20 + i * (bar_h + 6)
        v = r["sqnr_db"]
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(r["fqn"])}</text>'
        )
        if v is not None and math.isfinite(v) and v > 0:
            bw = v / top * width
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{y}" width="{bw:.1f}" height="{bar_h}" '
                f'fill="#1f77b4"><title>{_esc(r["fqn"])}: {v:.2f} dB</title></rect>'
            )
            parts.append(f'<text x="{label_w + bw + 4:.1f}" y="{y + 13}">{v:.1f} dB</text>')
        else:
            parts.append(f'<text x="{label_w + 4}" y="{y + 13}">{_esc(_fmt_sqnr(v))}</text>')
    return (
        f'<svg class="chart" id="sqnr" xmlns="http://www.w3.org/2000/svg" width="{_W}" '
        f'height="{h}" viewBox="0 0 {_W} {h}">' + "".join(parts) + "</svg>"
    )


# -- the document ---------------------------------------------------------------------------
def render_report(
    handle: ModelHandle,
    config: ModelConfig,
    *,
    results: Sequence[EvalResult] | None = None,
    images: Mapping[str, bytes] | None = None,
    title: str | None = None,
) -> str:
    """The report as one HTML string (see :func:`export_report`)."""
    from quantviz.io.config import config_to_dict

    rows = layer_rows(handle, config)
    results = list(results or [])
    chosen = results[0] if results else None
    title = title or f"quantviz report: {handle.name}"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="muted">model <code>{_esc(handle.source)}</code> · {when}</p>',
    ]
    if chosen is not None:
        out.append('<h2>Result</h2><table id="summary"><tbody>')
        for k, v in (
            ("configuration", chosen.name or "-"),
            (chosen.metric, f"{chosen.value:.4f} (float {chosen.baseline:.4f})"),
            ("size", f"{_fmt_bytes(chosen.model_bytes)} of {_fmt_bytes(chosen.float_bytes)}"),
            ("compression", f"{chosen.compression:.2f}x"),
            ("BOPs", f"{chosen.bops:.3g}"),
        ):
            out.append(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>")
        out.append("</tbody></table>")
        out.append("<h2>Trade-off</h2>")
        out.append(tradeoff_svg(results, chosen=chosen.name))
    out.append("<h2>Per-layer weight SQNR</h2>")
    out.append(sqnr_chart_svg(rows))
    out.append(
        '<h2>Layers</h2><table id="layers"><thead><tr><th>layer</th><th>kind</th>'
        '<th>scheme</th><th class="num">bytes</th><th class="num">SQNR dB</th></tr></thead><tbody>'
    )
    for r in rows:
        out.append(
            f'<tr data-fqn="{_esc(r["fqn"])}"><td>{_esc(r["fqn"])}</td><td>{_esc(r["kind"])}</td>'
            f'<td>{_esc(r["scheme"])}</td><td class="num">{r["bytes"]:.0f}</td>'
            f'<td class="num">{_esc(_fmt_sqnr(r["sqnr_db"]))}</td></tr>'
        )
    out.append("</tbody></table>")
    for name, png in (images or {}).items():
        if not isinstance(png, (bytes, bytearray)) or not png.startswith(b"\x89PNG"):
            raise ValueError(f"images: {name!r} is not PNG data")
        b64 = base64.b64encode(bytes(png)).decode("ascii")
        out.append(
            f'<h2>{_esc(name)}</h2><img alt="{_esc(name)}" src="data:image/png;base64,{b64}">'
        )
    # named like the json export: the config's model, else the model the report is about
    named = config if config.model else replace(config, model=handle.source)
    cfg_json = json.dumps(config_to_dict(named), indent=2, ensure_ascii=False)
    out.append(f'<h2>Configuration</h2><pre id="config">{_esc(cfg_json)}</pre>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def export_report(
    handle: ModelHandle,
    config: ModelConfig,
    path: str | os.PathLike[str],
    *,
    results: Sequence[EvalResult] | None = None,
    images: Mapping[str, bytes] | None = None,
    title: str | None = None,
) -> ExportResult:
    """Write the HTML report atomically; ``results[0]`` is the chosen configuration's result."""
    from quantviz.io.exporters import ExportResult

    text = render_report(handle, config, results=results, images=images, title=title)
    atomic_write_text(Path(path), text)
    return ExportResult(
        "html", [Path(path)], details={"layers": len(handle.layers), "results": len(results or [])}
    )
