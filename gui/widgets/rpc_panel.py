"""The Device page's RPC tab: a method (the firmware's, or typed), JSON args, Call, the reply
with its round-trip time."""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from fleetdesk_gui import bridge
from fleetdesk_gui.widgets.error_text import error_text

RPC_METHODS = ("Sys.GetInfo", "Config.Get", "Config.Set", "FS.List", "Sys.Reboot")


class RpcPanel(QWidget):
    """Call :meth:`call` with the session and thing to ask; the reply shows below."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.rpc_method = QComboBox()
        self.rpc_method.setObjectName("rpcMethod")
        self.rpc_method.setEditable(True)
        self.rpc_method.addItems(RPC_METHODS)
        self.rpc_args = QLineEdit()
        self.rpc_args.setObjectName("rpcArgs")
        self.rpc_args.setPlaceholderText('args as JSON, e.g. {"path": "/"}')
        self.rpc_button = QPushButton("Call")
        row.addWidget(self.rpc_method)
        row.addWidget(self.rpc_args, 1)
        row.addWidget(self.rpc_button)
        v.addLayout(row)
        self.rpc_reply = QPlainTextEdit()
        self.rpc_reply.setObjectName("rpcReply")
        self.rpc_reply.setReadOnly(True)
        v.addWidget(self.rpc_reply, 1)

    def call(self, session: Any, thing: str | None) -> None:
        """Call the selected method with the typed args on ``thing`` and show the reply."""
        if not thing:
            self.rpc_reply.setPlainText("Pick a thing first (the box at the top of the page).")
            return
        if session is None:
            self.rpc_reply.setPlainText("Not connected: see the status bar; choose or fix a profile in Settings.")
            return
        method = self.rpc_method.currentText().strip()
        text = self.rpc_args.text().strip()
        try:
            args = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            self.rpc_reply.setPlainText(f"args are not JSON: column {exc.colno}: {exc.msg}")
            return
        t0 = time.perf_counter()
        self.rpc_reply.setPlainText(f"→ {method} {text}\n…")

        def done(result: Any, error: BaseException | None) -> None:
            ms = (time.perf_counter() - t0) * 1000
            if error is not None:
                self.rpc_reply.setPlainText(f"→ {method} {text}\n✗ {error_text(error)} ({ms:.0f} ms)")
            else:
                self.rpc_reply.setPlainText(f"→ {method} {text}\n← ({ms:.0f} ms)\n{json.dumps(result, indent=2)}")

        bridge.submit(session.rpc.call(thing, method, args), done)
