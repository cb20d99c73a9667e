"""Light and dark application palettes (Fusion style) plus the shipped style sheet."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from quantviz.gui.plot_style import apply_plot_theme

__all__ = ["apply_theme", "style_sheet"]


def style_sheet() -> str:
    """The contents of ``resources/style.qss`` ("" when it is not shipped)."""
    here = Path(__file__).resolve().parent
    for cand in (
        here.parent.parent / "resources" / "style.qss",
        here.parent / "resources" / "style.qss",
    ):
        if cand.is_file():
            return cand.read_text(encoding="utf-8")
    return ""


def _dark_palette() -> QPalette:
    p = QPalette()
    c = QColor
    roles = QPalette.ColorRole
    for role, col in (
        (roles.Window, c(37, 40, 46)),
        (roles.WindowText, c(220, 223, 228)),
        (roles.Base, c(30, 33, 39)),
        (roles.AlternateBase, c(42, 46, 53)),
        (roles.ToolTipBase, c(50, 54, 62)),
        (roles.ToolTipText, c(230, 230, 230)),
        (roles.Text, c(220, 223, 228)),
        (roles.Button, c(48, 52, 60)),
        (roles.ButtonText, c(220, 223, 228)),
        (roles.BrightText, c(255, 120, 120)),
        (roles.Highlight, c(230, 119, 0)),
        (roles.HighlightedText, c(20, 20, 20)),
        (roles.Link, c(77, 171, 247)),
        (roles.Mid, c(70, 75, 85)),
        (roles.Midlight, c(60, 65, 74)),
        (roles.Dark, c(25, 27, 31)),
        (roles.PlaceholderText, c(140, 145, 155)),
    ):
        p.setColor(role, col)
    p.setColor(QPalette.ColorGroup.Disabled, roles.Text, c(110, 115, 125))
    p.setColor(QPalette.ColorGroup.Disabled, roles.ButtonText, c(110, 115, 125))
    p.setColor(QPalette.ColorGroup.Disabled, roles.WindowText, c(110, 115, 125))
    return p


def _disabled(p: QPalette, *, text: QColor, base: QColor) -> None:
    """Greyed text and a flat base for disabled widgets (``setColor(role, c)`` sets every
    colour group, so without this a disabled control looks enabled)."""
    g = QPalette.ColorGroup.Disabled
    roles = QPalette.ColorRole
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        p.setColor(g, role, text)
    p.setColor(g, roles.Base, base)
    p.setColor(g, roles.Button, base)


def _light_palette() -> QPalette:
    p = QPalette()
    c = QColor
    roles = QPalette.ColorRole
    for role, col in (
        (roles.Window, c(246, 247, 249)),
        (roles.WindowText, c(33, 37, 41)),
        (roles.Base, c(255, 255, 255)),
        (roles.AlternateBase, c(243, 245, 248)),
        (roles.Text, c(33, 37, 41)),
        (roles.Button, c(236, 238, 241)),
        (roles.ButtonText, c(33, 37, 41)),
        (roles.Highlight, c(217, 72, 15)),
        (roles.HighlightedText, c(255, 255, 255)),
        (roles.Mid, c(200, 204, 210)),
        (roles.Midlight, c(222, 226, 230)),
    ):
        p.setColor(role, col)
    _disabled(p, text=c(160, 164, 170), base=c(240, 241, 243))
    return p


def apply_theme(app: QApplication, dark: bool = False) -> None:
    """Fusion style, the light or dark palette, the style sheet and the plot colours."""
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if dark else _light_palette())
    app.setStyleSheet(style_sheet())
    apply_plot_theme(dark)
