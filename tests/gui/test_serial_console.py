"""Serial console widget: reads a socket:// port (what virtual boards expose) with real pyserial."""

from __future__ import annotations

import socket
import threading

import pytest

from gui.widgets.serial_console import SerialConsole

from .conftest import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def test_console_shows_what_the_board_prints(qloop, qtbot):
    import asyncio

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    sent = threading.Event()

    def board():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\nfleetdesk-fw 1.0.0 on esp32\r\n")
            sent.set()
            conn.recv(1)  # until the console closes

    t = threading.Thread(target=board, daemon=True)
    t.start()
    console = SerialConsole()
    qtbot.addWidget(console)
    console.show()

    async def scenario():
        console.open(f"socket://127.0.0.1:{port}")
        await until(lambda: "fleetdesk-fw 1.0.0 on esp32" in console.text(), 20, what=f"console text ({console.status.text()})")
        assert console.status.text().startswith("open: socket://")
        console.close_port()
        await until(lambda: console.status.text() == "closed", 10, what="closed")

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 50))
    finally:
        srv.close()
    assert "POWERON_RESET" in console.text()
    t.join(5)
