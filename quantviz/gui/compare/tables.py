"""The compare view's two tables, filled from a :class:`quantviz.app.compare.CompareState`.

``compareMetricsTable``: one row per compared configuration (metric, drop vs float, size,
compression, BOPs and a compact Evaluate / Re-evaluate button in a column sized to it);
a *stale* row (no result, or a
result of a configuration edited since) is italic and says so in its tooltip.
``compareLayerTable``: one row per layer, a scheme and an SQNR column per configuration;
the cells of a layer the configurations differ on are tinted and bold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from quantviz.app.compare import CompareState
from quantviz.gui.plot_style import current_theme
from quantviz.session import Session

__all__ = [
    "METRIC_COLUMNS",
    "fill_config_list",
    "fill_layers",
    "fill_metrics",
    "layer_column",
    "layer_row",
    "layer_table",
    "metrics_table",
]

METRIC_COLUMNS = ("Configuration", "Metric", "Drop vs float", "Size", "Compression", "BOPs", "")
M_NAME, M_METRIC, M_DROP, M_SIZE, M_COMP, M_BOPS, M_EVAL = range(len(METRIC_COLUMNS))


def fill_config_list(lst: QListWidget, session: Session, is_checked: Callable[[str], bool]) -> None:
    """One checkable item per configuration (``UserRole``: its name), signals blocked."""
    with QSignalBlocker(lst):
        lst.clear()
        for n in session.config_names:
            it = QListWidgetItem(n + ("  (current)" if n == session.current_name else ""))
            it.setData(Qt.ItemDataRole.UserRole, n)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = is_checked(n)
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            lst.addItem(it)


def _read_only(t: QTableWidget) -> QTableWidget:
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return t


def metrics_table(parent: QWidget) -> QTableWidget:
    t = _read_only(QTableWidget(0, len(METRIC_COLUMNS), parent))
    t.setObjectName("compareMetricsTable")
    t.setHorizontalHeaderLabels(list(METRIC_COLUMNS))
    t.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    hh = t.horizontalHeader()
    hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    # no stretch: the last column holds the Evaluate buttons (a stretched one spanned the
    # table's remaining width); the free width stays blank at the right
    hh.setStretchLastSection(False)
    return t


def _in_cell(button: QPushButton, parent: QWidget) -> QWidget:
    """``button`` at its size hint, left in a cell-sized holder (a cell widget is resized
    to the whole cell)."""
    holder = QWidget(parent)
    lay = QHBoxLayout(holder)
    lay.setContentsMargins(2, 1, 2, 1)
    lay.addWidget(button)
    lay.addStretch(1)
    return holder


def layer_table(parent: QWidget) -> QTableWidget:
    t = _read_only(QTableWidget(0, 1, parent))
    t.setObjectName("compareLayerTable")
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    t.setToolTip(
        "Tinted bold cells: the layer's scheme differs across the configurations. "
        "Right-click a row to copy its setting from one configuration to another."
    )
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return t


def fill_metrics(
    t: QTableWidget,
    state: CompareState,
    colour: Callable[[str], str],
    on_evaluate: Callable[[str], None],
) -> dict[str, QPushButton]:
    """Fill ``t``; returns the Evaluate / Re-evaluate button of each stale configuration."""
    t.setRowCount(len(state.metrics))
    buttons: dict[str, QPushButton] = {}
    for row, m in enumerate(state.metrics):
        tip = m.tooltip()
        for col, text in enumerate(m.texts()):
            it = QTableWidgetItem(text)
            f = QFont()
            f.setItalic(m.stale)
            f.setBold(col == M_NAME)
            it.setFont(f)
            if col == M_NAME:
                it.setForeground(QBrush(QColor(colour(m.name))))
            if tip:
                it.setToolTip(tip)
            elif col == M_SIZE and m.size_error:
                it.setToolTip(m.size_error)
            t.setItem(row, col, it)
        if m.stale:
            b = QPushButton("Evaluate" if m.entry is None else "Re-evaluate")
            b.setObjectName(f"evaluateButton_{m.name}")
            b.setToolTip(tip)
            b.clicked.connect(lambda *_, n=m.name: on_evaluate(n))
            t.setCellWidget(row, M_EVAL, _in_cell(b, t))
            buttons[m.name] = b
        else:
            t.removeCellWidget(row, M_EVAL)
    return buttons


def layer_column(names: Sequence[str], name: str, what: str = "scheme") -> int:
    """The per-layer table's column of configuration ``name`` (``scheme`` or ``sqnr``)."""
    if name not in names:
        raise ValueError(f"config name: {name!r} is not compared")
    return 1 + 2 * list(names).index(name) + (0 if what == "scheme" else 1)


def layer_row(fqns: Sequence[str], fqn: str) -> int:
    if fqn not in fqns:
        raise ValueError(f"layer: no quantizable layer named {fqn!r}")
    return list(fqns).index(fqn)


def fill_layers(t: QTableWidget, state: CompareState) -> None:
    """Fill ``t`` (signals blocked: the selection is the view's to restore)."""
    diff_bg = QColor(current_theme().accent)
    diff_bg.setAlpha(60)
    bold = QFont()
    bold.setBold(True)
    right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    with QSignalBlocker(t):
        t.setColumnCount(1 + 2 * len(state.names))
        t.setRowCount(len(state.layers))
        headers = ["Layer"]
        for n in state.names:
            headers += [n, "SQNR"]
        t.setHorizontalHeaderLabels(headers)
        for row, r in enumerate(state.layers):
            differs = r.differs
            name_item = QTableWidgetItem(("• " if differs else "") + r.fqn)
            name_item.setData(Qt.ItemDataRole.UserRole, r.fqn)
            if differs:
                name_item.setFont(bold)
                name_item.setToolTip("The configurations differ on this layer")
            t.setItem(row, 0, name_item)
            cells = zip(state.names, r.configs, r.schemes, r.sqnr_texts, strict=True)
            for i, (n, cfg, scheme, sq) in enumerate(cells):
                sch = QTableWidgetItem(scheme)
                sch.setToolTip(f"{n}: {cfg.short()}")
                if differs:
                    sch.setBackground(QBrush(diff_bg))
                    sch.setFont(bold)
                sq_item = QTableWidgetItem(sq)
                sq_item.setTextAlignment(right)
                t.setItem(row, 1 + 2 * i, sch)
                t.setItem(row, 2 + 2 * i, sq_item)
