"""The layer inspector: a table model over the session's layers plus its filterable view."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSignalBlocker,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.core.memory import layer_bytes
from quantviz.core.units import human_bytes, human_count

__all__ = ["COLUMNS", "LayerTableModel", "LayerTableWidget", "human_bytes", "human_count"]

COLUMNS = ("Layer", "Kind", "Shape", "Params", "Weight", "Act.", "SQNR", "Size", "Sens.")
C_NAME, C_KIND, C_SHAPE, C_PARAMS, C_W, C_A, C_SQNR, C_BYTES, C_SENS = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FQN_ROLE = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


class LayerTableModel(QAbstractTableModel):
    """One row per quantizable layer of ``session.handle``; read-only, mirrors the session.

    Rows that differ from the configuration's default are bold with a ``•`` marker; rows
    whose weight SQNR is below :attr:`sqnr_threshold` are tinted red.
    """

    def __init__(self, controller: AppController, parent: Any = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.session = session = controller.session
        self.sqnr_threshold = 20.0
        self._layers: list[Any] = []
        #: fqn -> scheme label the budget slider proposes (shown in the Weight column)
        self.preview: dict[str, str] = {}
        session.model_changed.connect(self._on_model)
        session.config_changed.connect(self._on_all_rows)
        session.sensitivity_changed.connect(self._on_all_rows)
        controller.sqnr.changed.connect(self._on_metrics)
        self._on_model(session.handle)

    # -- session -> model ------------------------------------------------------------------
    def _on_model(self, handle: Any) -> None:
        self.beginResetModel()
        self.preview = {}
        self._layers = [] if handle is None else list(handle.layers)
        self.endResetModel()

    def _on_all_rows(self, *_: Any) -> None:
        if self._layers:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._layers) - 1, C_SENS))

    def _on_metrics(self, fqns: tuple[str, ...]) -> None:
        for i, lay in enumerate(self._layers):
            if lay.fqn in fqns:
                self.dataChanged.emit(self.index(i, 0), self.index(i, C_SENS))

    def set_preview(self, assignment: dict[str, str] | None) -> None:
        """Show ``assignment`` (fqn -> scheme label) in the Weight column; None: the config."""
        self.preview = dict(assignment or {})
        if self._layers:
            self.dataChanged.emit(self.index(0, C_W), self.index(len(self._layers) - 1, C_W))

    def set_sqnr_threshold(self, value: float) -> None:
        self.sqnr_threshold = float(value)
        self._on_all_rows()

    def fqn(self, row: int) -> str:
        return self._layers[row].fqn

    def row_of(self, fqn: str) -> int:
        for i, lay in enumerate(self._layers):
            if lay.fqn == fqn:
                return i
        return -1

    # -- Qt model API ---------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._layers)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == Qt.ItemDataRole.DisplayRole and horizontal and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            tips = {
                C_SQNR: "Weight signal-to-quantization-noise ratio (dB) under the current config",
                C_BYTES: "Weight + bias storage under the current config",
                C_SENS: "Metric drop with only this layer quantized (run Sensitivity)",
            }
            return tips.get(section)
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._layers):
            return None
        lay = self._layers[index.row()]
        col = index.column()
        s = self.session
        if role == FQN_ROLE:
            return lay.fqn
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE, Qt.ItemDataRole.ToolTipRole):
            return self._value(lay, col, role)
        if role == Qt.ItemDataRole.FontRole and col == C_NAME and s.is_changed(lay.fqn):
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.BackgroundRole:
            sq = self.controller.layer_sqnr(lay.fqn)
            if sq is not None and not math.isnan(sq) and sq < self.sqnr_threshold:
                return QBrush(QColor(230, 80, 60, 70))
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (C_PARAMS, C_SQNR, C_BYTES, C_SENS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _value(self, lay: Any, col: int, role: int) -> Any:
        s = self.session
        sort = role == SORT_ROLE
        cfg = s.config.resolve(lay.fqn)
        if col == C_NAME:
            if role == Qt.ItemDataRole.ToolTipRole:
                changed = " (changed from the default)" if s.is_changed(lay.fqn) else ""
                return f"{lay.fqn}: {lay.class_name or lay.kind}{changed}"
            return lay.fqn if sort else (("• " if s.is_changed(lay.fqn) else "") + lay.fqn)
        if col == C_KIND:
            return lay.kind + (" dw" if lay.depthwise else "")
        if col == C_SHAPE:
            return "×".join(str(d) for d in lay.weight_shape)
        if col == C_PARAMS:
            return lay.params if sort else human_count(lay.params)
        if col == C_W:
            if lay.fqn in self.preview:
                if role == Qt.ItemDataRole.ToolTipRole:
                    return "the budget slider's choice for this layer (Apply makes it the config)"
                return f"→ {self.preview[lay.fqn]}"
            return f"W{cfg.weight.short()}" if cfg.weight else "float"
        if col == C_A:
            return f"A{cfg.activation.short()}" if cfg.activation else "float"
        if col == C_SQNR:
            sq = self.controller.layer_sqnr(lay.fqn)
            if sort:
                return -1e9 if sq is None or math.isnan(sq) else min(sq, 1e9)
            if sq is None:
                return "…"
            if math.isnan(sq):
                return "n/a"
            return "float" if math.isinf(sq) else f"{sq:.1f}"
        if col == C_BYTES:
            try:
                b = layer_bytes(lay, cfg)
            except ValueError:
                return -1.0 if sort else "n/a"
            return b if sort else human_bytes(b)
        if col == C_SENS:
            v = s.sensitivity.get(lay.fqn)
            if sort:
                return -1e9 if v is None else v
            return "" if v is None else f"{v:+.3f}"
        return None


class LayerTableWidget(QWidget):
    """Filter box + SQNR threshold + the sortable, multi-select ``layerTable`` view.

    The selection is mirrored into ``session.select``; session selection changes are
    mirrored back inside a ``QSignalBlocker``.
    """

    selectionEdited = Signal(tuple)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session = controller.session
        self.model = LayerTableModel(controller, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(C_NAME)
        self.proxy.setFilterRole(FQN_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter = QLineEdit(self)
        self.filter.setObjectName("layerFilter")
        self.filter.setPlaceholderText("Filter layers by name…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)

        self.threshold = QDoubleSpinBox(self)
        self.threshold.setObjectName("sqnrThresholdSpin")
        self.threshold.setRange(0.0, 80.0)
        self.threshold.setSingleStep(1.0)
        self.threshold.setDecimals(0)
        self.threshold.setSuffix(" dB")
        self.threshold.setValue(self.model.sqnr_threshold)
        self.threshold.setToolTip("Rows whose weight SQNR is below this are flagged in red")
        self.threshold.valueChanged.connect(self.model.set_sqnr_threshold)

        self.view = QTableView(self)
        self.view.setObjectName("layerTable")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        hh = self.view.horizontalHeader()
        # every column but the name fits its contents; the name takes what is left and is
        # elided in the middle (model.layers.3.self_attn.q_proj -> model.lay…q_proj), so the
        # nine columns fit the panel without a horizontal scroll bar
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(C_NAME, QHeaderView.ResizeMode.Stretch)
        hh.setStretchLastSection(False)
        hh.setMinimumSectionSize(36)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)

        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(QLabel("Flag SQNR <", self))
        top.addWidget(self.threshold)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.view)

        session.selection_changed.connect(self._on_session_selection)
        session.model_changed.connect(lambda *_: self.view.resizeColumnsToContents())
        session.model_changed.connect(lambda *_: self.fit_columns())

    #: columns given up, in this order, when the panel is too narrow for all nine
    OPTIONAL_COLUMNS = (C_SHAPE, C_KIND, C_PARAMS)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Hide the least needed columns (shape, kind, params) while the others do not fit
        beside a readable name column; show them again when there is room. Their values
        stay in the row's tooltip and the controls' title."""
        view, hh = self.view, self.view.horizontalHeader()
        for c in self.OPTIONAL_COLUMNS:
            hh.setSectionHidden(c, False)
        avail = view.viewport().width()
        name_min = 64  # the name is elided in the middle below its full width
        for c in self.OPTIONAL_COLUMNS:
            used = sum(
                max(hh.sectionSizeHint(i), view.sizeHintForColumn(i))
                for i in range(hh.count())
                if i != C_NAME and not hh.isSectionHidden(i)
            )
            if used + name_min <= avail:
                break
            hh.setSectionHidden(c, True)

    def selected_fqns(self) -> tuple[str, ...]:
        rows = sorted(
            {self.proxy.mapToSource(i).row() for i in self.view.selectionModel().selectedRows()}
        )
        return tuple(self.model.fqn(r) for r in rows)

    def _on_view_selection(self, *_: Any) -> None:
        fqns = self.selected_fqns()
        self.session.select(fqns)
        self.selectionEdited.emit(fqns)

    def _on_session_selection(self, fqns: tuple[str, ...]) -> None:
        if fqns == self.selected_fqns():
            return
        sel = QItemSelection()
        for f in fqns:
            r = self.model.row_of(f)
            if r < 0:
                continue
            src = self.model.index(r, 0)
            idx = self.proxy.mapFromSource(src)
            if idx.isValid():
                sel.select(idx, idx)
        with QSignalBlocker(self.view.selectionModel()):
            self.view.selectionModel().select(
                sel,
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows,
            )
        self.view.viewport().update()
