"""The layer inspector: a table model over the session's layers plus its filterable view."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRegularExpression,
    QSignalBlocker,
    QSortFilterProxyModel,
    Qt,
    QTimer,
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
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from quantviz.app import AppController
from quantviz.app.activation import integer_input
from quantviz.app.layer_groups import LayerGroup, group_layers
from quantviz.core.memory import layer_bytes
from quantviz.core.units import human_bytes, human_count

__all__ = ["COLUMNS", "LayerTableModel", "LayerTableWidget", "human_bytes", "human_count"]

COLUMNS = ("Layer", "Kind", "Shape", "Params", "Weight", "Act.", "SQNR", "Size", "Sens.")
C_NAME, C_KIND, C_SHAPE, C_PARAMS, C_W, C_A, C_SQNR, C_BYTES, C_SENS = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FQN_ROLE = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


def _natural(name: str) -> str:
    """A sort key that puts ``layers.2`` before ``layers.10``."""
    return re.sub(r"\d+", lambda m: m.group().zfill(9), name)


class LayerTableModel(QAbstractItemModel):
    """One row per quantizable layer of ``session.handle``, under a row per numbered block
    (``layers.3``) when the model has blocks (see :mod:`quantviz.app.layer_groups`);
    read-only, mirrors the session.

    Rows that differ from the configuration's default are bold with a ``•`` marker; rows
    whose weight SQNR is below :attr:`sqnr_threshold` are tinted red. A block row shows its
    layers' total params and size, their common scheme (or "mixed"), the lowest SQNR and the
    largest sensitivity. New SQNR values are collected and repainted in batches (one
    ``dataChanged`` per block touched, every :attr:`FLUSH_MS`), so filling 300+ rows from a
    worker costs the GUI thread little per value.
    """

    FLUSH_MS = 40
    #: emitted after the repaint of every row (a configuration, threshold or sensitivity
    #: change), not after SQNR batches
    allRowsChanged = Signal()

    def __init__(self, controller: AppController, parent: Any = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.session = session = controller.session
        self.sqnr_threshold = 20.0
        self._layers: list[Any] = []
        self._top: list[int | LayerGroup] = []
        self._groups: list[LayerGroup] = []
        self._group_row: list[int] = []  # top-level row of each group
        self._gid_at: dict[int, int] = {}  # top-level row -> group id
        self._where: list[tuple[int, int]] = []  # per layer: (0 or group id + 1, row)
        self._index: dict[str, int] = {}
        self._pending: set[int] = set()
        self._all_dirty = False
        self._cache: dict[int, _Row] = {}  # layer index, or -1 - group id
        #: whether a view shows block ``gid``'s layers (the widget sets it): a repaint of
        #: every row skips the blocks no view has open
        self.shows_children: Callable[[int], bool] = lambda gid: True
        self._bold = QFont()
        self._bold.setBold(True)
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(self.FLUSH_MS)
        self._flush.timeout.connect(self.flush_metrics)
        #: fqn -> scheme label the budget slider proposes (shown in the Weight column)
        self.preview: dict[str, str] = {}
        session.model_changed.connect(self._on_model)
        session.config_changed.connect(self._on_all_rows)
        session.sensitivity_changed.connect(self._on_all_rows)
        controller.sqnr.changed.connect(self._on_metrics)
        self._on_model(session.handle)

    # -- structure ---------------------------------------------------------------------------
    @property
    def grouped(self) -> bool:
        """True when the model has blocks (the table is a tree)."""
        return bool(self._groups)

    @property
    def groups(self) -> list[LayerGroup]:
        return list(self._groups)

    def _on_model(self, handle: Any) -> None:
        self.beginResetModel()
        self.preview = {}
        self._layers = [] if handle is None else list(handle.layers)
        fqns = [lay.fqn for lay in self._layers]
        self._index = {f: i for i, f in enumerate(fqns)}
        self._top = group_layers(fqns)
        self._groups = [g for g in self._top if isinstance(g, LayerGroup)]
        self._group_row = []
        self._gid_at = {}
        self._where = [(0, 0)] * len(self._layers)
        gid = 0
        for row, item in enumerate(self._top):
            if isinstance(item, LayerGroup):
                self._group_row.append(row)
                self._gid_at[row] = gid
                for r, i in enumerate(item.members):
                    self._where[i] = (gid + 1, r)
                gid += 1
            else:
                self._where[item] = (0, row)
        self._pending.clear()
        self._cache.clear()
        self.endResetModel()

    def _item(self, index: _Index) -> tuple[str, int]:
        """``("layer", layer index)`` or ``("group", group id)`` of a valid ``index``."""
        pid = index.internalId()
        if pid:
            return "layer", self._groups[pid - 1].members[index.row()]
        item = self._top[index.row()]
        if isinstance(item, LayerGroup):
            return "group", self._gid_at[index.row()]
        return "layer", item

    def index_of(self, fqn: str, column: int = 0) -> QModelIndex:
        """The model index of layer ``fqn`` (invalid when unknown)."""
        i = self._index.get(fqn)
        if i is None:
            return QModelIndex()
        pid, row = self._where[i]
        return self.createIndex(row, column, pid)

    def group_index(self, gid: int, column: int = 0) -> QModelIndex:
        return self.createIndex(self._group_row[gid], column, 0)

    def fqns_at(self, index: _Index) -> list[str]:
        """The layer of a layer row, or every layer of a block row."""
        if not index.isValid():
            return []
        kind, i = self._item(index)
        if kind == "group":
            return [self._layers[m].fqn for m in self._groups[i].members]
        return [self._layers[i].fqn]

    def fqn(self, row: int) -> str:
        """The name of layer ``row`` of the model's layer list (model order)."""
        return self._layers[row].fqn

    def row_of(self, fqn: str) -> int:
        """Position of ``fqn`` in the model's layer list; -1 when unknown. For a model
        without blocks that is its row (``index(row_of(f), 0)``); see :meth:`index_of`."""
        return self._index.get(fqn, -1)

    # -- session -> model ------------------------------------------------------------------
    def _emit_rows(self, rows: list[int], parent: QModelIndex) -> None:
        if rows:
            self.dataChanged.emit(
                self.index(min(rows), 0, parent), self.index(max(rows), C_SENS, parent)
            )

    def _on_all_rows(self, *_: Any) -> None:
        """Every row changed (a configuration, the threshold, sensitivities): read fresh at
        once, repainted at the next flush."""
        self._pending.clear()
        self._cache.clear()
        self._all_dirty = True
        if not self._flush.isActive():
            self._flush.start()

    def _on_metrics(self, fqns: tuple[str, ...]) -> None:
        for f in fqns:
            i = self._index.get(f)
            if i is not None:
                self._pending.add(i)
                self._cache.pop(i, None)  # read fresh at once; repainted at the next flush
                pid = self._where[i][0]
                if pid:
                    self._cache.pop(-pid, None)
        if self._pending and not self._flush.isActive():
            self._flush.start()

    def flush_metrics(self) -> None:
        """Repaint the rows whose SQNR arrived since the last flush: one ``dataChanged`` for
        the top-level rows and one per block touched (every row after :meth:`_on_all_rows`)."""
        if self._all_dirty:
            self._all_dirty = False
            self._pending.clear()
            if self._top:
                self._emit_rows([0, len(self._top) - 1], QModelIndex())
                for gid, g in enumerate(self._groups):
                    if self.shows_children(gid):  # a collapsed block reads afresh on opening
                        self._emit_rows([0, len(g.members) - 1], self.group_index(gid))
            self.allRowsChanged.emit()
            return
        pending, self._pending = self._pending, set()
        top: list[int] = []
        per_group: dict[int, list[int]] = {}
        for i in pending:
            pid, row = self._where[i]
            if pid:
                per_group.setdefault(pid - 1, []).append(row)
                top.append(self._group_row[pid - 1])
            else:
                top.append(row)
        self._emit_rows(top, QModelIndex())
        for gid, rows in per_group.items():
            self._emit_rows(rows, self.group_index(gid))

    def set_preview(self, assignment: dict[str, str] | None) -> None:
        """Show ``assignment`` (fqn -> scheme label) in the Weight column; None: the config."""
        self.preview = dict(assignment or {})
        self._on_all_rows()  # cached row texts are read afresh, repainted at the next flush

    def set_sqnr_threshold(self, value: float) -> None:
        self.sqnr_threshold = float(value)
        self._on_all_rows()

    # -- Qt model API ---------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        if not 0 <= column < len(COLUMNS) or row < 0:
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0) if row < len(self._top) else QModelIndex()
        if parent.internalId() or parent.column() != 0:
            return QModelIndex()
        item = self._top[parent.row()] if parent.row() < len(self._top) else None
        if not isinstance(item, LayerGroup) or row >= len(item.members):
            return QModelIndex()
        return self.createIndex(row, column, self._gid_at[parent.row()] + 1)

    def parent(self, index: _Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid() or not index.internalId():
            return QModelIndex()
        return self.createIndex(self._group_row[index.internalId() - 1], 0, 0)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._top)
        if parent.internalId() or parent.column() != 0:
            return 0
        item = self._top[parent.row()]
        return len(item.members) if isinstance(item, LayerGroup) else 0

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == Qt.ItemDataRole.DisplayRole and horizontal and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            tips = {
                C_SQNR: "Weight signal-to-quantization-noise ratio (dB) under the current "
                "config (a block: its lowest)",
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
        if not index.isValid():
            return None
        try:
            kind, i = self._item(index)
        except (IndexError, KeyError):
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._row(kind, i, index.internalId()).display[col]
        if role == Qt.ItemDataRole.BackgroundRole:
            return self._row(kind, i, index.internalId()).tint
        if role == Qt.ItemDataRole.FontRole:
            if col == C_NAME and self._row(kind, i, index.internalId()).bold:
                return self._bold
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _RIGHT_ALIGN if col in _RIGHT else None
        if role == SORT_ROLE:
            row = self._row(kind, i, index.internalId())
            if row.sort is None:
                row.sort = [self._compute(kind, i, index.internalId(), c, role) for c in _COLS]
            return row.sort[col]
        if role in (FQN_ROLE, Qt.ItemDataRole.ToolTipRole):
            return self._compute(kind, i, index.internalId(), col, role)
        return None

    def _row(self, kind: str, i: int, pid: int) -> _Row:
        """The cached texts, tint and boldness of a row (rebuilt after a change)."""
        key = i if kind == "layer" else -1 - i
        row = self._cache.get(key)
        if row is None:
            disp = Qt.ItemDataRole.DisplayRole
            display = [self._compute(kind, i, pid, c, disp) for c in _COLS]
            if kind == "group":
                layers = [self._layers[m] for m in self._groups[i].members]
                bold = any(self.session.is_changed(lay.fqn) for lay in layers)
                tint = self._tint(self._group_sqnr(layers)[0])
            else:
                fqn = self._layers[i].fqn
                bold = self.session.is_changed(fqn)
                tint = self._tint(self.controller.layer_sqnr(fqn))
            row = self._cache[key] = _Row(display, bold, tint)
        return row

    def _compute(self, kind: str, i: int, pid: int, col: int, role: int) -> Any:
        if kind == "group":
            return self._group_data(self._groups[i], col, role)
        lay = self._layers[i]
        if role == FQN_ROLE:
            return lay.fqn
        return self._value(lay, col, role, self._groups[pid - 1] if pid else None)

    def _tint(self, sq: float | None) -> QBrush | None:
        if sq is not None and not math.isnan(sq) and sq < self.sqnr_threshold:
            return QBrush(QColor(230, 80, 60, 70))
        return None

    def _value(self, lay: Any, col: int, role: int, group: LayerGroup | None = None) -> Any:
        s = self.session
        sort = role == SORT_ROLE
        tip = role == Qt.ItemDataRole.ToolTipRole
        cfg = s.config.resolve(lay.fqn)
        if col == C_NAME:
            if tip:
                changed = " (changed from the default)" if s.is_changed(lay.fqn) else ""
                return f"{lay.fqn}: {lay.class_name or lay.kind}{changed}"
            if sort:
                return _natural(lay.fqn)
            name = lay.fqn if group is None else group.child_name(lay.fqn)
            return ("• " if s.is_changed(lay.fqn) else "") + name
        if col == C_KIND:
            return lay.kind + (" dw" if lay.depthwise else "")
        if col == C_SHAPE:
            return "×".join(str(d) for d in lay.weight_shape)
        if col == C_PARAMS:
            return lay.params if sort else human_count(lay.params)
        if col == C_W and lay.fqn in self.preview:
            if tip:
                return "the budget slider's choice for this layer (Apply makes it the config)"
            return f"→ {self.preview[lay.fqn]}"
        if col == C_A and integer_input(lay):
            if tip:
                return "integer ids (an embedding's input) are never quantized" + (
                    f": A{cfg.activation.short()} does not apply here" if cfg.activation else ""
                )
            return "—"
        if col in (C_W, C_A):
            side = "weight" if col == C_W else "activation"
            text = _scheme(getattr(cfg, side), "W" if col == C_W else "A")
            return _decided_by(s.config, lay.fqn, text) if tip else text
        if col == C_SQNR:
            return _sqnr_text(self.controller.layer_sqnr(lay.fqn), sort)
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

    def _group_data(self, g: LayerGroup, col: int, role: int) -> Any:
        s = self.session
        layers = [self._layers[m] for m in g.members]
        if role == FQN_ROLE:
            return g.key
        if role not in (Qt.ItemDataRole.DisplayRole, SORT_ROLE, Qt.ItemDataRole.ToolTipRole):
            return None
        sort = role == SORT_ROLE
        tip = role == Qt.ItemDataRole.ToolTipRole
        if col == C_NAME:
            if tip:
                return f"{g.key}: a block of {len(layers)} layers"
            if sort:
                return _natural(g.key)
            changed = any(s.is_changed(lay.fqn) for lay in layers)
            return ("• " if changed else "") + g.label
        if col == C_KIND:
            return f"{len(layers)} layers"
        if col == C_SHAPE:
            return "" if not tip else None
        if col == C_PARAMS:
            n = sum(lay.params for lay in layers)
            return n if sort else human_count(n)
        if col in (C_W, C_A):
            side, prefix = ("weight", "W") if col == C_W else ("activation", "A")
            texts = {
                "—"
                if col == C_A and integer_input(lay)
                else _scheme(getattr(s.config.resolve(lay.fqn), side), prefix)
                for lay in layers
            }
            return texts.pop() if len(texts) == 1 else "mixed"
        if col == C_SQNR:
            low, who, known = self._group_sqnr(layers)
            if tip:
                return None if who is None else f"lowest: {who} ({known}/{len(layers)} known)"
            if known < len(layers) and not sort:
                return "…" if low is None else f"{_sqnr_text(low, False)}…"
            return _sqnr_text(low, sort)
        if col == C_BYTES:
            try:
                b = sum(layer_bytes(lay, s.config.resolve(lay.fqn)) for lay in layers)
            except ValueError:
                return -1.0 if sort else "n/a"
            return b if sort else human_bytes(b)
        if col == C_SENS:
            vals = [v for lay in layers if (v := s.sensitivity.get(lay.fqn)) is not None]
            v = max(vals) if vals else None
            if sort:
                return -1e9 if v is None else v
            if tip:
                return None if v is None else "the block's largest drop"
            return "" if v is None else f"{v:+.3f}"
        return None

    def _group_sqnr(self, layers: list[Any]) -> tuple[float | None, str | None, int]:
        """``(lowest known SQNR, its layer, how many are known)`` of a block's layers."""
        low: float | None = None
        who: str | None = None
        known = 0
        for lay in layers:
            sq = self.controller.layer_sqnr(lay.fqn)
            if sq is None:
                continue
            known += 1
            if not math.isnan(sq) and (low is None or sq < low):
                low, who = sq, lay.fqn
        return low, who, known


_RIGHT = (C_PARAMS, C_SQNR, C_BYTES, C_SENS)
_RIGHT_ALIGN = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_COLS = range(len(COLUMNS))


@dataclass
class _Row:
    display: list[Any]
    bold: bool
    tint: QBrush | None
    sort: list[Any] | None = None


def _scheme(spec: Any, prefix: str) -> str:
    return f"{prefix}{spec.short()}" if spec else "float"


def _sqnr_text(sq: float | None, sort: bool) -> Any:
    if sort:
        return -1e9 if sq is None or math.isnan(sq) else min(sq, 1e9)
    if sq is None:
        return "…"
    if math.isnan(sq):
        return "n/a"
    return "float" if math.isinf(sq) else f"{sq:.1f}"


def _decided_by(config: Any, fqn: str, text: str) -> str:
    """``text`` plus which override decides it (the last match wins) or the default."""
    keys = config.matching(fqn)
    if not keys:
        return f"{text}: the configuration's default"
    if len(keys) == 1:
        return f"{text}: from override '{keys[0]}'"
    others = ", ".join(f"'{k}'" for k in keys[:-1])
    return (
        f"{text}: from override '{keys[-1]}', the last of {len(keys)} that match "
        f"(the last match wins over {others})"
    )


class LayerTreeView(QTreeView):
    """The layer tree; ``horizontalHeader()`` as on a table view (scripts and tests that
    measured the flat table keep working)."""

    def horizontalHeader(self) -> QHeaderView:
        return self.header()


class LayerTableWidget(QWidget):
    """Regex filter + expand/collapse + SQNR threshold + the sortable, multi-select
    ``layerTable`` view (a tree: layers under their block, flat for a model without blocks).

    The selection is mirrored into ``session.select`` (a block row selects its layers); session
    selection changes are mirrored back inside a ``QSignalBlocker``, expanding the blocks of
    the selected layers. Keyboard: Right / Left (or + / -) expand / collapse a block.
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
        self.proxy.setRecursiveFilteringEnabled(True)  # a block shows when a layer matches
        self.proxy.setAutoAcceptChildRows(True)  # a matching block shows all its layers

        self.filter = QLineEdit(self)
        self.filter.setObjectName("layerFilter")
        self.filter.setPlaceholderText("Filter layers (regex: q_proj, layers\\.1\\d, mlp)…")
        self.filter.setToolTip(
            "A regular expression searched in each layer's full name (case-insensitive); "
            "a block shows when any of its layers matches"
        )
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.set_filter)
        self.filterError = QLabel(self)
        self.filterError.setObjectName("layerFilterError")
        self.filterError.setWordWrap(True)
        self.filterError.setStyleSheet("color: #d0342c;")
        self.filterError.hide()
        self.matchLabel = QLabel(self)
        self.matchLabel.setObjectName("layerCountLabel")

        self.expandButton = QToolButton(self)
        self.expandButton.setObjectName("expandAllButton")
        self.expandButton.setText("Expand all")
        self.expandButton.setToolTip("Show the layers of every block")
        self.collapseButton = QToolButton(self)
        self.collapseButton.setObjectName("collapseAllButton")
        self.collapseButton.setText("Collapse all")
        self.collapseButton.setToolTip("Show one row per block")

        self.threshold = QDoubleSpinBox(self)
        self.threshold.setObjectName("sqnrThresholdSpin")
        self.threshold.setRange(0.0, 80.0)
        self.threshold.setSingleStep(1.0)
        self.threshold.setDecimals(0)
        self.threshold.setSuffix(" dB")
        self.threshold.setValue(self.model.sqnr_threshold)
        self.threshold.setToolTip("Rows whose weight SQNR is below this are flagged in red")
        self.threshold.valueChanged.connect(self.model.set_sqnr_threshold)

        self.view = LayerTreeView(self)
        self.view.setObjectName("layerTable")
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)  # 300+ rows: no per-row size queries
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAllColumnsShowFocus(True)
        self.view.setAlternatingRowColors(True)
        self.view.setIndentation(14)
        hh = self.view.header()
        # every column but the name fits its contents; the name takes what is left and is
        # elided in the middle (model.layers.3.self_attn.q_proj -> model.lay…q_proj), so the
        # nine columns fit the panel without a horizontal scroll bar
        # (sized by fit_to_contents, debounced: ResizeToContents would measure every row
        # of every column again on each repaint batch of a 300-row model)
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setSectionResizeMode(C_NAME, QHeaderView.ResizeMode.Stretch)
        hh.setResizeContentsPrecision(120)
        hh.setStretchLastSection(False)
        hh.setMinimumSectionSize(36)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.view.selectionModel().selectionChanged.connect(self._on_view_selection)
        self.expandButton.clicked.connect(self.view.expandAll)
        self.collapseButton.clicked.connect(self.view.collapseAll)
        self.model.shows_children = lambda gid: self.view.isExpanded(
            self.proxy.mapFromSource(self.model.group_index(gid))
        )
        self._hints: dict[int, int] = {}  # measured widths of the columns (fit_to_contents)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(150)
        self._fit_timer.timeout.connect(self.fit_to_contents)
        # re-measured when texts may have changed width (a configuration edit, a block
        # opened, a sort), never per SQNR batch: SQNR texts keep their width
        for sig in (self.model.allRowsChanged, self.view.expanded, self.proxy.layoutChanged):
            sig.connect(self._schedule_fit)

        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.expandButton)
        top.addWidget(self.collapseButton)
        top.addWidget(QLabel("Flag SQNR <", self))
        top.addWidget(self.threshold)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.filterError)
        lay.addWidget(self.view)
        lay.addWidget(self.matchLabel)

        session.selection_changed.connect(self._on_session_selection)
        self.model.modelReset.connect(self._on_reset)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)
        self._on_reset()

    # -- structure and filter --------------------------------------------------------------
    def _on_reset(self) -> None:
        grouped = self.model.grouped
        self.view.setRootIsDecorated(grouped)
        self.expandButton.setVisible(grouped)
        self.collapseButton.setVisible(grouped)
        self.fit_to_contents()
        self._update_count()

    def _schedule_fit(self, *_: Any) -> None:
        if not self._fit_timer.isActive():
            self._fit_timer.start()

    def fit_to_contents(self) -> None:
        """Every column but the name as wide as its header and the rows in view (the name
        takes the rest), then :meth:`fit_columns`."""
        hh = self.view.header()
        for c in self.OPTIONAL_COLUMNS:
            hh.setSectionHidden(c, False)
        self._hints = {
            c: max(hh.sectionSizeHint(c), self.view.sizeHintForColumn(c))
            for c in range(len(COLUMNS))
            if c != C_NAME
        }
        for c, w in self._hints.items():
            hh.resizeSection(c, w)
        self.fit_columns()

    def set_filter(self, text: str) -> None:
        """Show the layers whose full name the regular expression ``text`` finds (all when
        empty). An invalid expression is reported under the field and changes nothing."""
        rx = QRegularExpression(text, QRegularExpression.PatternOption.CaseInsensitiveOption)
        if not rx.isValid():
            self.filterError.setText(
                f"Invalid regular expression: {rx.errorString()} at position "
                f"{rx.patternErrorOffset()} (the filter is unchanged)"
            )
            self.filterError.show()
            return
        self.filterError.hide()
        self.filterError.setText("")
        self.proxy.setFilterRegularExpression(rx)
        if text and self.model.grouped:
            self.view.expandAll()
        self._update_count()

    @property
    def filter_error(self) -> str:
        """The message shown for an invalid filter ("" when the filter is valid)."""
        return self.filterError.text()

    def visible_fqns(self) -> list[str]:
        """The layers the filter lets through (collapsed blocks included), in view order."""
        out: list[str] = []
        p = self.proxy
        for r in range(p.rowCount()):
            idx = p.index(r, 0)
            n = p.rowCount(idx)
            if n:
                out.extend(p.index(c, 0, idx).data(FQN_ROLE) for c in range(n))
            elif not self.model.grouped or self.model.rowCount(p.mapToSource(idx)) == 0:
                out.append(idx.data(FQN_ROLE))
        return out

    def _update_count(self, *_: Any) -> None:
        total = len(self.model._layers)
        if not total:
            self.matchLabel.setText("")
            return
        shown = (
            len(self.visible_fqns()) if self.proxy.filterRegularExpression().pattern() else total
        )
        groups = len(self.model.groups)
        blocks = f" in {groups} blocks" if groups else ""
        if shown == total:
            self.matchLabel.setText(f"{total} layers{blocks}")
        else:
            self.matchLabel.setText(f"{shown} of {total} layers match the filter")

    #: columns given up, in this order, when the panel is too narrow for all nine
    OPTIONAL_COLUMNS = (C_SHAPE, C_KIND, C_PARAMS)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Hide the least needed columns (shape, kind, params) while the others do not fit
        beside a readable name column; show them again when there is room. Their values
        stay in the row's tooltip and the controls' title."""
        view, hh = self.view, self.view.header()
        for c in self.OPTIONAL_COLUMNS:
            hh.setSectionHidden(c, False)
        avail = view.viewport().width()
        # the name is elided in the middle below its full width; a block's layers need
        # room for "mlp.down_proj" beside the indentation
        name_min = 150 if self.model.grouped else 64
        hints = self._hints
        for c in self.OPTIONAL_COLUMNS:
            used = sum(
                hints.get(i) or max(hh.sectionSizeHint(i), view.sizeHintForColumn(i))
                for i in range(hh.count())
                if i != C_NAME and not hh.isSectionHidden(i)
            )
            if used + name_min <= avail:
                break
            hh.setSectionHidden(c, True)

    # -- selection ----------------------------------------------------------------------------
    def selected_fqns(self) -> tuple[str, ...]:
        """The selected layers in model order; a selected block row stands for its layers
        that the filter shows."""
        chosen: set[str] = set()
        p = self.proxy
        for pidx in self.view.selectionModel().selectedRows():
            src = p.mapToSource(pidx)
            kids = p.rowCount(pidx)
            if kids:
                chosen.update(p.index(r, 0, pidx).data(FQN_ROLE) for r in range(kids))
            else:
                chosen.update(self.model.fqns_at(src))
        return tuple(sorted(chosen, key=self.model.row_of))

    def _on_view_selection(self, *_: Any) -> None:
        fqns = self.selected_fqns()
        self.session.select(fqns)
        self.selectionEdited.emit(fqns)

    def _on_session_selection(self, fqns: tuple[str, ...]) -> None:
        if fqns == self.selected_fqns():
            return
        sel = QItemSelection()
        first = None
        for f in fqns:
            idx = self.proxy.mapFromSource(self.model.index_of(f))
            if not idx.isValid():
                continue
            if idx.parent().isValid() and not self.view.isExpanded(idx.parent()):
                self.view.expand(idx.parent())
            sel.select(idx, idx)
            first = idx if first is None else first
        with QSignalBlocker(self.view.selectionModel()):
            self.view.selectionModel().select(
                sel,
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows,
            )
        if first is not None:
            self.view.scrollTo(first)
        self.view.viewport().update()
