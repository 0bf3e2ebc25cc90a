"""Batch BLE setup on virtual boards running the real firmware, into the sandbox: a sheet of
boards provisioned concurrently, a state and reason per row, failed rows resumed, results
exported without secrets; and the same from `fleetdesk ble provision --batch`."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import threading
import time

import pytest

from fleetdesk.ble.batch import export_results, load_batch, pending, run_batch
from fleetdesk.config import Profile, Profiles
from fleetdesk.errors import BleError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
NETS = {"fieldnet": "secret123"}


class _Console:
    def __init__(self) -> None:
        self.buf, self.lock = bytearray(), threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.buf.extend(data)

    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")


@pytest.fixture
def boards(tmp_path, monkeypatch, sandbox):
    """start(n) -> [(mac, console)]: n virtual boards in Config mode, each with PoP pop-<mac>."""
    from fleetdesk.boards.bundle import firmware_files
    from fleetdesk.virtual.runtime import launch_firmware

    monkeypatch.setenv("FLEETDESK_BLE_REGISTRY", str(tmp_path / "registry"))
    Profiles(active="sb", items={"sb": Profile(name="sb", kind="sandbox", state_dir=sandbox.state_dir)}).save()
    files = firmware_files()
    handles = []

    def start(n: int, first: int = 0):
        out = []
        for i in range(first, first + n):
            mac = f"240ac4b0{i:02x}10"
            fs = tmp_path / f"vfs-{mac}"
            for name, data in files.items():
                (fs / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                (fs / name.lstrip("/")).write_bytes(data)
            (fs / "config.json").write_text(json.dumps({"pop": f"pop-{mac}", "product": "fd-sensor"}))
            console = _Console()
            handles.append(launch_firmware(fs, mac=mac, chip="esp32", console=console,
                                           env={"FD_WIFI_NETWORKS": json.dumps(NETS)}))
            out.append((mac, console))
        deadline = time.monotonic() + 60
        for mac, console in out:
            while "waiting for BLE provisioning" not in console.text():
                assert time.monotonic() < deadline, f"{mac} not in Config mode: {console.text()[-500:]}"
                time.sleep(0.1)
        return out

    yield start
    for h in handles:
        h.stop()


def _ble(mac: str) -> str:
    raw = bytearray(bytes.fromhex(mac))
    raw[5] = (raw[5] + 2) & 0xFF
    return ":".join(f"{b:02X}" for b in raw)


def test_a_sheet_of_boards_concurrently_with_a_failed_row_resumed(boards, tmp_path):
    started = boards(3)
    (m0, _), (m1, _), (m2, _) = started
    sheet = tmp_path / "boards.csv"
    sheet.write_text("address,pop,wifi_ssid,wifi_password,thing\n"
                     f"{_ble(m0)},pop-{m0},fieldnet,secret123,greenhouse-{m0[-4:]}\n"
                     f"{_ble(m1)},wrong-pop,fieldnet,secret123,\n"
                     f"FD-{m2[-6:].upper()},pop-{m2},fieldnet,secret123,fd-{{mac}}\n")
    rows = load_batch(sheet)
    seen_states: dict[int, list[str]] = {}
    profile = Profiles.load().current
    asyncio.run(run_batch(rows, profile, parallel=3, kind="virtual",
                          on_row=lambda r: seen_states.setdefault(r.row, []).append(r.state)))
    by_row = {r.row: r for r in rows}
    assert by_row[2].state == "done" and by_row[2].thing_name == f"greenhouse-{m0[-4:]}"
    assert by_row[4].state == "done" and by_row[4].thing_name == f"fd-{m2}", by_row[4].reason
    assert by_row[3].state == "failed" and "proof-of-possession" in by_row[3].reason, by_row[3].reason
    assert "commit" in seen_states[2] and "certificates" in seen_states[2]
    assert [r.row for r in pending(rows)] == [3]
    by_row[3].pop = f"pop-{m1}"  # the technician fixes the PoP, then Resume
    asyncio.run(run_batch(rows, profile, parallel=3, kind="virtual"))
    assert by_row[3].state == "done" and by_row[3].thing_name == f"fd-{m1}", by_row[3].reason
    out = export_results(rows, tmp_path / "results.csv")
    text = out.read_text()
    assert "pop-" not in text and "secret123" not in text
    assert [r["state"] for r in csv.DictReader(text.splitlines())] == ["done", "done", "done"]


def test_sheet_problems_name_the_line_and_column(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text("pop,wifi_ssid\nx,net\n")
    with pytest.raises(BleError, match="no address column"):
        load_batch(bad)
    bad.write_text("address,wifi_ssid,wifi_password\n24:0A:C4:00:00:01,,pw\n")
    with pytest.raises(BleError, match="line 2: wifi_ssid is empty"):
        load_batch(bad)
    bad.write_text("address,wifi_ssid\n24:0A:C4:00:00:01,net\n")
    with pytest.raises(BleError, match="line 2: no wifi_password"):
        load_batch(bad)
    assert load_batch(bad, default_password="pw")[0].wifi_password == "pw"


def test_cli_batch(boards, tmp_path):
    ((mac, console),) = boards(1, first=7)
    sheet = tmp_path / "one.csv"
    sheet.write_text(f"address,pop,wifi_ssid\n{_ble(mac)},pop-{mac},fieldnet\n")
    pw = tmp_path / "pw"
    pw.write_text("secret123\n")
    results = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "fleetdesk", "ble", "provision", "--batch", str(sheet),
                           "--wifi-pass-file", str(pw), "--parallel", "2", "--virtual", "--json",
                           "--results", str(results)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1]["batch"]["done"] == 1 and lines[-1]["batch"]["failed"] == 0
    assert any(line.get("state") == "done" and line.get("thing") == f"fd-{mac}" for line in lines[:-1])
    assert "done" in results.read_text()
