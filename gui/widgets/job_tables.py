"""The Jobs page's two tables: jobs with their execution counts, one job's executions."""

from __future__ import annotations

import time

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from fleetdesk.cloud.jobs import local_time

RED = "#b3261e"
JOB_ID_WIDTH = 110


def fit_columns(table: QTableWidget) -> None:
    """Columns sized to their contents; the last one takes the rest of the width."""
    header = table.horizontalHeader()
    for c in range(table.columnCount() - 1):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(table.columnCount() - 1, QHeaderView.ResizeMode.Stretch)
    table.setWordWrap(False)


def _short(stamp: str) -> str:
    """"HH:MM:SS" for today's "YYYY-MM-DD HH:MM:SS" (the date in the tooltip): the columns fit 1024 px."""
    return stamp[11:] if stamp[:10] == time.strftime("%Y-%m-%d") else stamp


def fill_jobs(table: QTableWidget, jobs: list[dict], selected: str | None) -> None:
    """One row per job (JobWatch.jobs rows); failures in red; the selected job stays selected."""
    table.setRowCount(len(jobs))
    for r, j in enumerate(jobs):
        created, completed = local_time(j.get("createdAt")), local_time(j.get("completedAt"))
        vals = (j.get("jobId", ""), j.get("status", ""), j.get("executions", ""), _short(created), _short(completed))
        tips = (f"{j.get('jobId', '')} ({str(j.get('targetSelection') or '').lower()})", "", "", created, completed)
        for c, v in enumerate(vals):
            item = QTableWidgetItem(str(v))
            if tips[c]:
                item.setToolTip(tips[c])
            if c in (1, 2) and j.get("bad"):  # COMPLETED with failed executions: say so in red
                item.setForeground(QColor(RED))
            table.setItem(r, c, item)
        if j.get("jobId") == selected:
            table.selectRow(r)
    table.setColumnWidth(0, min(table.sizeHintForColumn(0), JOB_ID_WIDTH))  # a long id is elided, whole in its tooltip


def fill_executions(table: QTableWidget, rows: list[dict]) -> None:
    """One row per execution (JobWatch.executions rows): thing, status (red when it failed), details."""
    table.setRowCount(len(rows))  # rows sorted by thing: a selection stays on its row
    for r, e in enumerate(rows):
        for c, v in enumerate((e["thing"], e.get("status") or "", e.get("details", ""))):
            item = QTableWidgetItem(str(v))
            if c == 2 and v:
                item.setToolTip(str(v))  # long reasons are elided in the cell
            if c == 1 and v in ("FAILED", "TIMED_OUT", "REJECTED"):
                item.setForeground(QColor(RED))
            table.setItem(r, c, item)
