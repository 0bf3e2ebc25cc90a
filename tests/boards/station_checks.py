"""Helpers of the station tests that flash identities on virtual boards against the session's sandbox:
a MAC new to the sandbox, a certificate's status, the certificate a board holds or a backup holds,
and a Station set up as a test station (``review``) would be."""

from __future__ import annotations

import hashlib
import os

import pytest

from fleetdesk.boards.identity import CloudTarget
from fleetdesk.boards.station import Station, StationSettings
from fleetdesk.boards.vfs import read_files, unpack_files


def new_mac() -> str:  # a board new to the session's sandbox
    return "24:6f:28:" + os.urandom(3).hex(":")


def cert_status(cloud, cert_id: str) -> str:
    return cloud.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def board_cert(board, vfs) -> str | None:
    data = board.flash.read(vfs.offset, vfs.size)
    files = {} if data.count(0xFF) == len(data) else read_files(data)
    cert = files.get("/certs/cert.der")
    return hashlib.sha256(cert).hexdigest() if cert else None


def backed_up_cert(db, mac) -> str | None:
    """The certificate id held by the newest identity backup of ``mac`` (None: no backup)."""
    backup = db.latest_backup(mac, "identity")
    if backup is None:
        return None
    files = unpack_files(backup[1]) or {}
    return hashlib.sha256(files["/certs/cert.der"]).hexdigest() if "/certs/cert.der" in files else None


def review_station(bundle_dir, cloud, db, **kw) -> Station:
    kw.setdefault("wait_online", False)
    kw.setdefault("boot_wait", 0.3)
    return Station(StationSettings(bundle=str(bundle_dir), identity=True, station="review", **kw), cloud=cloud, db=db)


@pytest.fixture
def cloud(sandbox):
    return CloudTarget.from_sandbox(sandbox.state_dir)
