"""The fleet table: a QAbstractTableModel over FleetState, updated in batches.

The model never reacts to single messages: :meth:`FleetTableModel.apply_changes` is called
with the set of things changed since the last tick (gui.live.LiveFleet, 4 Hz) and emits one
``dataChanged`` over the changed rows' span, plus one insert for new things. Sorting and
filtering are a QSortFilterProxyModel on a sort role with one type per column, so Qt
compares natively (no Python per comparison).
"""

from __future__ import annotations

import datetime
import json
import math

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

SORT_ROLE = Qt.UserRole + 1
NAME_ROLE = Qt.UserRole + 2
COLUMNS = (
    ("name", "Thing"),
    ("online", "Online"),
    ("last_seen", "Last seen"),
    ("firmware", "Firmware"),
    ("shadow_version", "Shadow v"),
    ("temperature", "Temp °C"),
    ("humidity", "Humidity %"),
    ("groups", "Groups"),
    ("attributes", "Attributes"),
)
NUMERIC = {"last_seen", "shadow_version", "temperature", "humidity"}
ONLINE_BRUSH = QBrush(QColor("#1b7f3b"))
OFFLINE_BRUSH = QBrush(QColor("#b3261e"))
UNKNOWN_BRUSH = QBrush(QColor("#7b8794"))
_ROLES = frozenset({Qt.DisplayRole, Qt.TextAlignmentRole, Qt.ForegroundRole, Qt.ToolTipRole, SORT_ROLE, NAME_ROLE})
_RIGHT = int(Qt.AlignRight | Qt.AlignVCenter)


def format_time(ts: float | None) -> str:
    """Local time of day for today, else date + time; "" for None."""
    if not ts:
        return ""
    dt = datetime.datetime.fromtimestamp(ts)
    if dt.date() == datetime.date.today():
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%Y-%m-%d %H:%M")


class FleetTableModel(QAbstractTableModel):
    """Rows = things of a FleetState (in arrival order; sorting is the proxy's job)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.fleet = None
        self._names: list[str] = []
        self._rows: dict[str, int] = {}
        self._cache: dict[int, tuple] = {}  # row -> display strings, dropped when the row changes
        self.batches = 0  # apply_changes calls that changed something (tests, diagnostics)

    # -- feeding ------------------------------------------------------------------------
    def set_fleet(self, fleet) -> None:
        """Show ``fleet`` (a FleetState, or None for an empty table)."""
        self.beginResetModel()
        self.fleet = fleet
        self._names = sorted(fleet.things) if fleet is not None else []
        self._rows = {n: i for i, n in enumerate(self._names)}
        self._cache.clear()
        self.endResetModel()

    def apply_changes(self, names) -> None:
        """Reflect a batch of changed things: one insert + one dataChanged at most."""
        fleet = self.fleet
        if fleet is None or not names:
            return
        gone = [n for n in names if n in self._rows and n not in fleet.things]
        if gone:  # deletions are rare: rebuild
            self.set_fleet(fleet)
            return
        new = sorted(n for n in names if n not in self._rows and n in fleet.things)
        if new:
            first = len(self._names)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for n in new:
                self._rows[n] = len(self._names)
                self._names.append(n)
            self.endInsertRows()
        rows = [self._rows[n] for n in names if n in self._rows]
        for r in rows:
            self._cache.pop(r, None)
        if rows:  # column 0 (the name) never changes: a table sorted by name is not re-sorted
            self.dataChanged.emit(self.index(min(rows), 1), self.index(max(rows), len(COLUMNS) - 1))
        self.batches += 1

    def name_at(self, row: int) -> str:
        return self._names[row]

    # -- Qt model API -------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._names)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section][1]
        return None

    def data(self, index, role=Qt.DisplayRole):
        # Views ask for ~8 roles per cell per paint: answer the unused ones first, cheaply.
        if role not in _ROLES or self.fleet is None:
            return None
        row, col = index.row(), index.column()
        if role == Qt.DisplayRole:
            cached = self._cache.get(row)
            if cached is None:
                t = self.fleet.things.get(self._names[row])
                if t is None:
                    return None
                cached = self._cache[row] = tuple(self._display(t, key) for key, _ in COLUMNS)
            return cached[col]
        if role == Qt.TextAlignmentRole:
            return _RIGHT if COLUMNS[col][0] in NUMERIC else None
        name = self._names[row]
        if role == NAME_ROLE:
            return name
        t = self.fleet.things.get(name)
        if t is None:
            return None
        key = COLUMNS[col][0]
        if role == SORT_ROLE:
            return self._sort_key(t, key)
        if role == Qt.ForegroundRole:
            if key != "online":
                return None
            return ONLINE_BRUSH if t.online else (OFFLINE_BRUSH if t.online is False else UNKNOWN_BRUSH)
        if role == Qt.ToolTipRole:
            if key == "online" and t.online is False and t.disconnect_reason:
                return f"disconnected: {t.disconnect_reason}"
            if key == "last_seen" and t.last_seen:
                return datetime.datetime.fromtimestamp(t.last_seen).isoformat(timespec="seconds")
            if key == "attributes" and t.attributes:
                return json.dumps(t.attributes, indent=1)
        return None

    @staticmethod
    def _display(t, key: str) -> str:
        v = getattr(t, key)
        if key == "online":
            return "online" if v else ("offline" if v is False else "?")
        if key == "last_seen":
            return format_time(v)
        if key == "temperature":
            return "" if v is None else f"{v:.1f}"
        if key == "humidity":
            return "" if v is None else f"{v:.0f}"
        if key == "groups":
            return ", ".join(v)
        if key == "attributes":
            return ", ".join(f"{k}={val}" for k, val in sorted(v.items()))
        return "" if v is None else str(v)

    @staticmethod
    def _sort_key(t, key: str):
        v = getattr(t, key)
        if key in NUMERIC:
            return -math.inf if v is None else float(v)
        if key == "online":
            return 2 if v else (1 if v is False else 0)
        if key == "groups":
            return ",".join(v)
        if key == "attributes":
            return json.dumps(v, sort_keys=True)
        return "" if v is None else str(v)


class FleetFilterProxy(QSortFilterProxyModel):
    """Filter by text (thing name, firmware, groups, attribute values) and by group."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.group = ""
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_text(self, text: str) -> None:
        self._refilter(lambda: setattr(self, "text", text.strip().lower()))

    def set_group(self, group: str) -> None:
        self._refilter(lambda: setattr(self, "group", group or ""))

    def _refilter(self, change) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10
            self.beginFilterChange()
            change()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            change()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:  # noqa: N802
        model: FleetTableModel = self.sourceModel()
        if model.fleet is None:
            return False
        t = model.fleet.things.get(model.name_at(row))
        if t is None:
            return False
        if self.group and self.group not in t.groups:
            return False
        if self.text:
            hay = " ".join([t.name, t.firmware or "", *t.groups, *map(str, t.attributes.values())]).lower()
            return self.text in hay
        return True

    def names(self, proxy_rows) -> list[str]:
        """Thing names for proxy row numbers."""
        model: FleetTableModel = self.sourceModel()
        return [model.name_at(self.mapToSource(self.index(r, 0)).row()) for r in proxy_rows]
