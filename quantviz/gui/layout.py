"""Fitting the window on a small screen (1366 x 768) and the View menu's panel toggles.

- :func:`scrolled` wraps a tall panel (layer controls, override editor) in a scroll area so
  the window's minimum height no longer adds up every panel's minimum: with a dock open
  under the plots the window still fits the screen instead of growing past its bottom edge.
- :func:`give_room` shows a bottom dock with a readable height (a fraction of the window)
  the first time it opens, instead of its minimum height.
- :func:`install_panel_toggles` adds every dock's ``toggleViewAction()`` (and the toolbar's)
  to View > Panels, so a closed dock can be reopened (as napari does).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QToolBar,
    QWidget,
)

__all__ = [
    "DOCK_FRACTION",
    "SteadyLabel",
    "give_room",
    "install_panel_toggles",
    "keep_room",
    "scrolled",
]

#: the height of a bottom dock when it opens, as a fraction of the window's height
DOCK_FRACTION = 0.38
#: below this height (fraction of DOCK_FRACTION) a re-shown dock is given its room again
_CRAMPED = 0.6


def scrolled(widget: QWidget, name: str = "") -> QScrollArea:
    """``widget`` in a frameless vertical scroll area (named ``name`` or after it)."""
    area = QScrollArea()
    area.setObjectName(name or f"{widget.objectName() or type(widget).__name__}Scroll")
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setMinimumHeight(60)
    # the widget's own width still counts: no horizontal scrolling of form rows
    area.setMinimumWidth(widget.minimumSizeHint().width())
    return area


class SteadyLabel(QLabel):
    """A word-wrapped label that keeps its room while the user works in one place.

    A note one line shorter shrank its panel's minimum height, a splitter then gave the
    room to a neighbour and the panels around it (the transforms panel's checkboxes) jumped
    ~10 px under the pointer. So the label's height only grows with its text: ticking
    box after box leaves every box where it was. The room is *released* (the label fits
    its current text again, so no stale blank lines stay behind a long note) when:

    - the pointer leaves an area given to :meth:`release_on_leave` (the main window gives
      the right-hand column: layer controls, transforms, activations), i.e. the user has
      moved on and nothing under the pointer moves;
    - the owner calls :meth:`release`, after the selected layer changed (a new layer's
      notes; the panels show another layer anyway);
    - the label is shown again.

    With ``collapse=True`` an empty label is hidden, once its room is released.

    A new width (a button beside it shown or hidden) only grows the room, for the same
    reason."""

    def __init__(
        self, text: str = "", parent: QWidget | None = None, *, collapse: bool = False
    ) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._room = 0
        #: hidden while empty, but only once its room is released (an emptied note keeps
        #: its blank room until then, as a shorter one does)
        self.collapse = collapse
        if collapse and not text:
            self.hide()

    def setText(self, text: str) -> None:
        super().setText(text)
        if self.collapse and text and self.isHidden():
            self.show()  # (its showEvent fits it to the text)
        elif self.collapse and not text and not self._room:
            self.hide()
        self._keep_room()

    def release(self, *_: Any) -> None:
        """Drop the kept room: fit the current text (call it after setting a new text)."""
        self._room = 0
        if self.collapse and not self.text():
            self.hide()
        self._keep_room()

    def release_on_leave(self, area: QWidget) -> None:
        """:meth:`release` whenever the pointer leaves ``area``."""
        area.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # (a combo box's popup over the area takes the pointer too: not a leave)
        if event.type() == QEvent.Type.Leave and QApplication.activePopupWidget() is None:
            self.release()
        return False

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.release()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._keep_room()

    def text_height(self, width: int) -> int:
        """The height the text needs at ``width`` (QLabel's ``heightForWidth`` is floored at
        the minimum height, i.e. at the kept room)."""
        if width <= 0:
            return 0
        kept = self.minimumHeight()
        if kept:
            self.setMinimumHeight(0)
        need = self.heightForWidth(width)
        if kept:
            self.setMinimumHeight(kept)
        return need

    def _keep_room(self) -> None:
        self._room = max(self._room, self.text_height(self.width()))
        if self._room != self.minimumHeight():
            self.setMinimumHeight(self._room)


def give_room(win: QMainWindow, dock: QDockWidget, fraction: float = DOCK_FRACTION) -> None:
    """Show bottom/top ``dock`` and, when docked, make it ``fraction`` of the window's
    height the first time and whenever it is cramped (the central widget keeps the rest; a
    size the user dragged to stays otherwise)."""
    dock.show()
    dock.raise_()
    if dock.isFloating():
        return
    area = win.dockWidgetArea(dock)
    vertical = area in (Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.TopDockWidgetArea)
    orient = Qt.Orientation.Vertical if vertical else Qt.Orientation.Horizontal
    total = win.height() if vertical else win.width()
    want = int(total * fraction)
    have = dock.height() if vertical else dock.width()
    first = not dock.property("quantvizRoomGiven")  # its size hint may be most of the window
    if first or have < want * _CRAMPED:
        dock.setProperty("quantvizRoomGiven", True)
        win.resizeDocks([dock], [want], orient)


def keep_room(win: QMainWindow, dock: QDockWidget, fraction: float = DOCK_FRACTION) -> None:
    """Whenever ``dock`` is shown (View menu, a run), give it room if it is cramped."""

    def on_visible(visible: bool) -> None:
        if visible and not dock.isFloating():
            give_room(win, dock, fraction)

    dock.visibilityChanged.connect(on_visible)


def install_panel_toggles(win: Any) -> list[Any]:
    """View > Panels: a checkable show/hide action per dock and toolbar of ``win`` (the
    dock's own ``toggleViewAction``), named ``<objectName>Toggle``. Returns the actions."""
    view_menu = next(
        (a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "View"), None
    )
    if view_menu is None:
        view_menu = win.menuBar().addMenu("&View")
    panels = view_menu.addMenu("&Panels")
    panels.setObjectName("panelsMenu")
    win.panelsMenu = panels
    out = []
    docks = sorted(win.findChildren(QDockWidget), key=lambda d: d.windowTitle())
    for w in [*docks, *win.findChildren(QToolBar)]:
        act = w.toggleViewAction()
        if not act.objectName():
            act.setObjectName(f"{w.objectName()}Toggle")
        if isinstance(w, QToolBar):
            act.setText(f"{w.windowTitle()} toolbar")
        act.setStatusTip(f"Show or hide {act.text()}")
        panels.addAction(act)
        out.append(act)
    return out
