"""Colours and pens shared by the plots (light and dark palettes)."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem

__all__ = ["PlotTheme", "apply_plot_theme", "current_theme", "style_plot"]


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
