"""Serial console widget: reads a socket:// port (what virtual boards expose) with real pyserial."""

from __future__ import annotations

import socket
import threading

import pytest

from fleetdesk_gui.widgets.serial_console import SerialConsole

from gui_testutil import until

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


def test_console_shows_what_the_board_prints(qloop, qtbot):
    import asyncio

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    sent = threading.Event()
    stop = threading.Event()

    def board():  # prints like a running board; pyserial drops what arrived before open() finished
        conn, _ = srv.accept()
        with conn:
            try:
                conn.sendall(b"ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n")
                n = 0
                while not stop.is_set():
                    conn.sendall(b"fleetdesk-fw 1.0.0 on esp32: tick %d\r\n" % n)
                    n += 1
                    sent.set()
                    stop.wait(0.1)
            except OSError:  # the console closed the port
                pass

    t = threading.Thread(target=board, daemon=True)
    t.start()
    console = SerialConsole()
    qtbot.addWidget(console)
    console.show()

    async def scenario():
        console.open(f"socket://127.0.0.1:{port}")
        try:
            await until(lambda: "fleetdesk-fw 1.0.0 on esp32" in console.text(), 20, what="console text")
        except AssertionError:
            from fleetdesk_gui import bridge
            b = bridge.instance()
            raise AssertionError(f"status={console.status.text()!r} serial={console._serial} sent={sent.is_set()} "
                                 f"text={console.text()!r} pending={b.pending()} sched={b._scheduled} "
                                 f"timer={b._timer.isActive()} slices={b.slices}")
        assert console.status.text().startswith("open: socket://")
        assert console.open_button.isChecked() and console.open_button.text() == "Close"
        console.close_port()
        await until(lambda: console.status.text() == "closed", 10, what="closed")
        assert not console.open_button.isChecked() and console.open_button.text() == "Open"

    try:
        qloop.run_until_complete(asyncio.wait_for(scenario(), 50))
    finally:
        stop.set()
        srv.close()
    stop.set()
    t.join(5)


def test_open_without_a_port_or_on_a_dead_one_says_what_to_do(qloop, qtbot):
    import asyncio

    from fleetdesk_gui.widgets.serial_console import NO_PORTS

    console = SerialConsole()
    qtbot.addWidget(console)
    console.show()
    console.port_combo.setEditText("")
    console.open_button.click()  # the user presses Open with no port
    assert console.status.text() == NO_PORTS
    assert not console.open_button.isChecked() and console.open_button.text() == "Open"
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: like an unplugged board

    async def scenario():
        console.open(f"socket://127.0.0.1:{port}")
        await until(lambda: console.status.text().startswith("closed:"), 20, what="open failure shown")

    qloop.run_until_complete(asyncio.wait_for(scenario(), 30))
    assert "plugged in" in console.status.text()
    assert not console.open_button.isChecked() and console.open_button.text() == "Open"
