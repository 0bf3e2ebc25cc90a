"""Each mapped failure shows its advice on the tile (issue 10 §5): real failures on virtual
boards (a port that never answers, a port that is gone, a wrong-chip board, too little flash,
secure boot, flash encryption) end in FAIL with the mapped one-line advice as the tile's message, and the
Details pane holds the esptool lines and the full reason."""

from __future__ import annotations

import socket
import threading

import pytest

from fleetdesk.boards.advice import _RULES, advise
from fleetdesk.boards.controller import StationController
from fleetdesk.boards.ports import PortInfo, list_ports
from fleetdesk.boards.station import StationSettings
from fleetdesk.store.production import ProductionDB

pytestmark = [pytest.mark.gui, pytest.mark.slow, pytest.mark.timeout(240)]


class SilentPort:
    """A serial port with nothing answering on it (a charge-only cable, a board held in reset):
    it accepts the connection and swallows every byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"socket://127.0.0.1:{self.sock.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(0.2)
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for c in [*self._conns, self.sock]:
            c.close()


@pytest.fixture
def silent_port():
    port = SilentPort()
    try:
        yield port
    finally:
        port.close()


def _closed_port_url() -> str:
    """A socket:// port nothing listens on (the board was unplugged)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"socket://127.0.0.1:{s.getsockname()[1]}"


def _action(code: str) -> str:
    """The advice text the operator must see for a failure code (from the mapping table)."""
    action = next(a for _p, _prob, a, c in _RULES if c == code)
    return action if isinstance(action, str) else action(__import__("sys").platform)


def test_each_failure_shows_its_advice_on_the_tile(qtbot, rig, bundle_dir, tmp_path, silent_port):
    from fleetdesk_gui.pages.stations import StationsPage

    gone = _closed_port_url()
    cases = {  # port -> (advice code, text the Details pane must hold)
        silent_port.url: ("no-serial-data", "No serial data received"),
        gone: ("port-gone", "Connection refused"),
    }
    for code, spec in (("wrong-chip", {"chip": "esp32s3"}), ("too-big", {"flash_mb": 2}),
                       ("secure-boot", {"secure_boot": True}), ("flash-encryption", {"flash_encryption": True})):
        (board,) = rig.add(1, register=True, **spec)
        cases[board.url] = (code, {"wrong-chip": "ESP32-S3", "too-big": "2048 KB", "secure-boot": "secure boot",
                                   "flash-encryption": "flash encryption"}[code])

    def lister():  # the virtual boards, plus the two dead ports as virtual ones
        return list_ports(include_serial=False) + [PortInfo(silent_port.url, kind="virtual", location="jig-silent"),
                                                   PortInfo(gone, kind="virtual", location="jig-gone")]

    db = ProductionDB(tmp_path / "prod.sqlite3")
    ctl = StationController(StationSettings(bundle=str(bundle_dir), identity=False, baud=115200, boot_wait=0),
                            lister=lister, db=db)
    page = StationsPage(controller=ctl)
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: len(page.tiles) == len(cases), timeout=5000)
    assert page.start_all() == len(cases)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=200_000)
    page.refresh()

    for slot, state in ctl.tiles.items():
        code, detail = cases[state.port]
        res = state.last_result
        tile = page.tiles[slot]
        assert state.state == "FAIL" and tile.result.text().startswith("FAIL"), (code, res.error)
        assert res.advice_code == code, (code, res.error)
        # the tile's message is the mapped advice, in one line
        assert tile.message.text() == advise(res.error).line() and "\n" not in tile.message.text()
        assert _action(code) in tile.message.text()
        # details on demand: esptool's own lines and the full reason
        tile.details_btn.setChecked(True)
        assert tile.details.isVisibleTo(tile)
        text = tile.details.text()
        if code != "port-gone":  # (a port that cannot be opened has no connect lines)
            assert "Connecting" in text, (code, text)  # esptool's connect lines
        assert detail in text and res.error in text, (code, text)
    assert sorted(a["result"] for a in db.attempts()) == ["FAIL"] * len(cases)
    page.close()
