"""The fleet table: an item model over FleetState, updated in batches.

The model never reacts to single messages: :meth:`FleetTableModel.apply_changes` is called
with the set of things changed since the last tick (fleetdesk_gui.live.LiveFleet, 2 Hz) and emits one
``dataChanged`` over the changed rows' span, plus one insert for new things. Values are kept
in C++ items and sorting/filtering is a QSortFilterProxyModel on a sort role with one type
per column and a regular expression: painting, sorting and filtering run without Python.
"""

from __future__ import annotations

import datetime
import json
import math
import time

from PySide6.QtCore import QModelIndex, QRegularExpression, QSortFilterProxyModel, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2
FILTER_ROLE = Qt.ItemDataRole.UserRole + 3
COLUMNS = (
    ("name", "Thing"),
    ("online", "Online"),
    ("last_seen", "Last seen"),
    ("firmware", "Firmware"),
    ("shadow_version", "Shadow ver."),
    ("temperature", "Temp °C"),
    ("humidity", "Humidity %"),
    ("groups", "Groups"),
    ("attributes", "Attributes"),
)
NEW_ROWS_PER_SLICE = 50  # a new row costs ~0.3 ms (9 items): 1,000 new things arrive over 20 slices
_FILTERED = (3, 7, 8)  # firmware, groups, attributes: the filter text besides the name
NUMERIC = {"last_seen", "shadow_version", "temperature", "humidity"}
ONLINE_BRUSH = QBrush(QColor("#1b7f3b"))
OFFLINE_BRUSH = QBrush(QColor("#b3261e"))
UNKNOWN_BRUSH = QBrush(QColor("#7b8794"))
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def format_time(ts: float | None) -> str:
    """Local time of day for today, else date + time; "" for None."""
    if not ts:
        return ""
    dt = datetime.datetime.fromtimestamp(ts)
    if dt.date() == datetime.date.today():
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%Y-%m-%d %H:%M")


class FleetTableModel(QStandardItemModel):
    """Rows = things of a FleetState (in arrival order; sorting is the proxy's job).

    Values live in C++ items, so painting and sorting never call into Python (a Python
    ``data()`` costs ~10 us per role per cell: 1,000 rows repainted at 2-4 Hz would eat a
    core). A tick writes only the cells whose text changed, with signals blocked, then
    emits one ``dataChanged`` over the changed rows.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.fleet = None
        self._names: list[str] = []
        self._rows: dict[str, int] = {}
        self._shown: dict[int, tuple] = {}  # row -> display strings last written
        self._raw: dict[int, tuple] = {}  # row -> raw values last written
        self._pending: set[str] = set()
        self._scheduled = False
        self._budget: float | None = None
        self.batches = 0  # apply_changes calls that changed something (tests, diagnostics)

    # -- feeding ------------------------------------------------------------------------
    def set_fleet(self, fleet) -> None:
        """Show ``fleet`` (a FleetState, or None for an empty table)."""
        self.beginResetModel()
        self.blockSignals(True)
        try:
            self.setRowCount(0)
            self.fleet = fleet
            self._names, self._rows, self._shown, self._raw = [], {}, {}, {}
            if fleet is not None:
                self._append(sorted(fleet.things))
        finally:
            self.blockSignals(False)
        self.endResetModel()

    def _append(self, names: list[str]) -> None:
        first = len(self._names)
        self.setRowCount(first + len(names))
        for i, n in enumerate(names):
            row = first + i
            self._rows[n] = row
            self._names.append(n)
            name_item = self.item(row, 0) or QStandardItem()
            name_item.setData(n, Qt.ItemDataRole.DisplayRole)
            name_item.setData(n, SORT_ROLE)
            name_item.setData(n, NAME_ROLE)
            self.setItem(row, 0, name_item)
            for col in range(1, len(COLUMNS)):
                item = QStandardItem()
                if COLUMNS[col][0] in NUMERIC:
                    item.setData(_RIGHT, Qt.ItemDataRole.TextAlignmentRole)
                self.setItem(row, col, item)
            self._write(row)

    def _write(self, row: int) -> bool:
        """Copy one thing's changed values into its items; True if any shown text changed."""
        t = self.fleet.things.get(self._names[row]) if self.fleet is not None else None
        if t is None:
            return False
        # Raw values first (cheap); only the columns whose raw value moved get formatted.
        raw = (t.name, (t.online, t.disconnect_reason), int(t.last_seen or 0), t.firmware, t.shadow_version,
               t.temperature, t.humidity, t.groups, t.attributes)
        old_raw = self._raw.get(row)
        if raw == old_raw:
            return False
        self._raw[row] = (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], list(raw[7]), dict(raw[8]))
        old = self._shown.get(row)
        shown = list(old) if old is not None else [""] * len(COLUMNS)
        changed = False
        for col, (key, _) in enumerate(COLUMNS):
            if col == 0 or (old_raw is not None and old_raw[col] == raw[col]):
                continue
            text = self._display(t, key)
            if old is not None and old[col] == text and key != "online":
                continue
            shown[col] = text
            changed = True
            item = self.item(row, col)
            item.setData(text, Qt.DisplayRole)
            item.setData(self._sort_key(t, key), SORT_ROLE)
            if key == "online":
                item.setData(ONLINE_BRUSH if t.online else (OFFLINE_BRUSH if t.online is False else UNKNOWN_BRUSH),
                             Qt.ForegroundRole)
                item.setData(f"disconnected: {t.disconnect_reason}" if t.online is False and t.disconnect_reason
                             else None, Qt.ToolTipRole)
            elif key == "attributes":
                item.setData(json.dumps(t.attributes, indent=1) if t.attributes else None, Qt.ToolTipRole)
        self._shown[row] = tuple(shown)
        if old_raw is None or any(old_raw[c] != raw[c] for c in _FILTERED):  # what the filter looks at
            hay = " ".join([t.name, t.firmware or "", *t.groups, *map(str, t.attributes.values())]).lower()
            self.item(row, 0).setData(f"{hay}\x1f|{'|'.join(t.groups)}|", FILTER_ROLE)
        return changed

    def apply_changes(self, names, budget_s: float | None = None) -> None:
        """Reflect a batch of changed things: one insert + one dataChanged per slice.

        Args:
            names: things changed since the last call.
            budget_s: None = all now; else work at most this long per event-loop turn and
                continue in the next one (the UI keeps painting while 1,000 rows update).
        """
        fleet = self.fleet
        if fleet is None or not names:
            return
        if any(n in self._rows and n not in fleet.things for n in names):  # deletions are rare: rebuild
            self._pending.clear()
            self.set_fleet(fleet)
            return
        self._pending.update(names)
        self._budget = budget_s
        if budget_s is None:
            self._apply_slice()
        elif not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(0, self._apply_slice)

    def _apply_slice(self) -> None:
        self._scheduled = False
        fleet, budget = self.fleet, self._budget
        if fleet is None:
            self._pending.clear()
            return
        deadline = None if budget is None else time.perf_counter() + budget
        new = sorted(n for n in self._pending if n not in self._rows and n in fleet.things)
        if new:
            if deadline is not None:
                new = new[:NEW_ROWS_PER_SLICE]
            first = len(self._names)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self.blockSignals(True)
            try:
                self._append(new)
            finally:
                self.blockSignals(False)
            self.endInsertRows()
            self._pending.difference_update(new)
        rows = []
        self.blockSignals(True)
        try:
            while self._pending:
                name = self._pending.pop()
                row = self._rows.get(name)
                if row is None:
                    if name in fleet.things:
                        self._pending.add(name)  # a new row for the next slice
                        break
                    continue
                if self._write(row):
                    rows.append(row)
                if deadline is not None and time.perf_counter() > deadline:
                    break
        finally:
            self.blockSignals(False)
        if rows:  # column 0 (the name) never changes: a table sorted by name is not re-sorted
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))
        self.batches += 1
        if self._pending:
            if budget is None:
                self._apply_slice()
            else:
                self._scheduled = True
                QTimer.singleShot(0, self._apply_slice)

    def name_at(self, row: int) -> str:
        return self._names[row]

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
    """Filter by text (thing name, firmware, groups, attribute values) and by group.

    Both filters are one regular expression on a hidden per-row string, evaluated by Qt
    (no Python call per row).
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = ""
        self.group = ""
        self.setSortRole(SORT_ROLE)
        self.setFilterRole(FILTER_ROLE)
        self.setFilterKeyColumn(0)
        self.setDynamicSortFilter(True)

    def set_text(self, text: str) -> None:
        self.text = text.strip().lower()
        self._apply()

    def set_group(self, group: str) -> None:
        self.group = group or ""
        self._apply()

    def _apply(self) -> None:
        parts = []
        if self.text:
            parts.append(f"(?=[^\\x1f]*{QRegularExpression.escape(self.text)})")
        if self.group:
            parts.append(f"(?=.*\\|{QRegularExpression.escape(self.group)}\\|)")
        self.setFilterRegularExpression(QRegularExpression("^" + "".join(parts), QRegularExpression.PatternOption.DotMatchesEverythingOption))

    def names(self, proxy_rows) -> list[str]:
        """Thing names for proxy row numbers."""
        return [self.data(self.index(r, 0), NAME_ROLE) for r in proxy_rows]
