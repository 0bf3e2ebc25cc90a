"""Reading a QTableWidget cell's text where the cell may hold no item."""

from __future__ import annotations

from PySide6.QtWidgets import QTableWidget


def cell_text(table: QTableWidget, row: int, column: int) -> str:
    """The text in one cell ("" where the table has no item there)."""
    item = table.item(row, column)
    return item.text() if item is not None else ""
