"""Colours and pens shared by the plots (light and dark palettes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QGraphicsItem

__all__ = [
    "PlotTheme",
    "ValueLogAxis",
    "apply_plot_theme",
    "current_theme",
    "set_fitted_title",
    "style_plot",
]


@dataclass(frozen=True)
class PlotTheme:
    name: str
    background: str
    foreground: str
    hist: tuple[int, int, int, int]
    hist_line: str
    grid: str
    compare: str
    clip: tuple[int, int, int, int]
    accent: str
    front: str
    baseline: str
    series: tuple[str, ...]


LIGHT = PlotTheme(
    name="light",
    background="#ffffff",
    foreground="#303640",
    hist=(120, 144, 176, 150),
    hist_line="#506888",
    grid="#d9480f",
    compare="#1c7ed6",
    clip=(224, 49, 49, 40),
    accent="#d9480f",
    front="#2b8a3e",
    baseline="#868e96",
    series=("#d9480f", "#1c7ed6", "#7048e8", "#2b8a3e", "#e67700", "#c2255c"),
)

DARK = PlotTheme(
    name="dark",
    background="#1e2127",
    foreground="#d0d4da",
    hist=(110, 140, 180, 150),
    hist_line="#8fb0e0",
    grid="#ff922b",
    compare="#4dabf7",
    clip=(255, 107, 107, 45),
    accent="#ff922b",
    front="#69db7c",
    baseline="#adb5bd",
    series=("#ff922b", "#4dabf7", "#b197fc", "#69db7c", "#ffd43b", "#f783ac"),
)

_current = [LIGHT]


def current_theme() -> PlotTheme:
    return _current[0]


def apply_plot_theme(dark: bool) -> PlotTheme:
    """Select the plot palette for plots created from now on."""
    th = DARK if dark else LIGHT
    _current[0] = th
    pg.setConfigOptions(background=th.background, foreground=th.foreground, antialias=False)
    return th


def style_plot(pw: pg.PlotWidget, x: str, y: str, x_units: str | None = None) -> None:
    """Axis labels, a light grid and the theme's background on a plot widget."""
    th = current_theme()
    pw.setBackground(th.background)
    pi = pw.getPlotItem()
    pi.setLabel("bottom", x, units=x_units)
    pi.setLabel("left", y)
    pi.showGrid(x=True, y=True, alpha=0.15)
    for name in ("bottom", "left", "top", "right"):
        ax = pi.getAxis(name)
        if name in ("bottom", "left"):
            ax.setPen(th.foreground)
            ax.setTextPen(th.foreground)
        # repaints replay the axis text otherwise (~4 ms per axis with the raster engine)
        ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # grid lines at the labelled ticks only: the minor-tick grid doubles the paint time
        ax.setStyle(maxTickLevel=0)
    pi.setMenuEnabled(False)
    pi.hideButtons()
    if pi.titleLabel.text:  # re-colour an existing title (palette switch)
        pi.titleLabel.setText(pi.titleLabel.text, color=th.foreground)
    legend = pi.legend
    if legend is not None:
        legend.setLabelTextColor(th.foreground)
        legend.setBrush(pg.mkBrush(th.background + "d0"))
        for _sample, label in legend.items:
            label.setText(label.text, color=th.foreground)


def histogram_item(th: PlotTheme, **kw: object) -> pg.PlotDataItem:
    """An empty step-histogram item in the theme's colours (fill it with ``setData``)."""
    return pg.PlotDataItem(
        [0.0, 1.0],
        [0.0],
        stepMode="center",
        fillLevel=0,
        brush=pg.mkBrush(*th.hist),
        pen=pg.mkPen(th.hist_line, width=1),
        **kw,
    )


class ValueLogAxis(pg.AxisItem):
    """An axis whose log mode ticks read the value itself, also over less than a decade.

    pyqtgraph's log ticks are the 1..9 x 10^n values only, written with one digit
    (``1·10²``): a perplexity axis from 115.0 to 115.2 had no tick label at all, from 90
    to 105 one (the 90 fell off the end). Over less than a decade, evenly spaced values
    (1, 2 or 5 x 10^k apart) are ticked instead, each written with as many digits as it
    takes to tell them apart.
    """

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: Any) -> Any:
        ticks = super().logTickValues(minVal, maxVal, size, stdTicks)
        if not abs(maxVal - minVal) < 1:  # a decade or more (or no range): 1..9 x 10^n
            return ticks
        lo, hi = sorted((10.0**minVal, 10.0**maxVal))
        raw = (hi - lo) / max(2, int(size // 30))  # about a label per 30 px
        if not raw > 0:
            return ticks
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
        values = [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
        return [(None, [math.log10(v) for v in values if v > 0])]

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        shown = [10.0 ** float(v) * scale for v in values]
        texts = [f"{x:.3g}" for x in shown]
        for digits in range(3, 9):
            texts = [f"{x:.{digits}g}" for x in shown]
            if len(set(texts)) == len(texts):
                break
        return texts


class _TitleFit(QObject):
    """Keeps a plot's title elided to the plot's width, again after each resize."""

    def __init__(self, pw: pg.PlotWidget) -> None:
        super().__init__(pw)
        self.pw, self.text, self.size = pw, "", "10pt"
        pw.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.apply()
        return False

    def apply(self) -> None:
        font = QFont(self.pw.font())
        font.setPointSizeF(float(self.size.removesuffix("pt")))
        pi = self.pw.getPlotItem()
        # the title sits over the view box: the left axis's width is not its room
        axis = pi.getAxis("left")
        room = max(60, self.pw.width() - (axis.width() if axis.isVisible() else 0) - 24)
        shown = QFontMetrics(font).elidedText(self.text, Qt.TextElideMode.ElideRight, room)
        pi.setTitle(shown, size=self.size)
        pi.titleLabel.setToolTip(self.text if shown != self.text else "")


def set_fitted_title(pw: pg.PlotWidget, text: str, size: str = "10pt") -> None:
    """Title ``text``, elided at the end to the plot's width (whole in its tooltip): a
    long layer name (``model.layers.1.mlp.down_proj — 131,072 weights, group 0 of 1024``)
    ran off the plot's right edge."""
    fit = pw.findChild(_TitleFit) or _TitleFit(pw)
    fit.text, fit.size = text, size
    fit.apply()
