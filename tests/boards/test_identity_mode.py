"""One identity mode per station, decided once; contradictions named as the operator sees them."""

from __future__ import annotations

import pytest

from fleetdesk.boards.errors import StageFailed
from fleetdesk.boards.identity_mode import IdentityMode, identity_mode
from fleetdesk.boards.station import BoardResult, StationSettings
from fleetdesk.errors import BoardError


@pytest.mark.parametrize("kw, mode", [
    ({"identity": False}, IdentityMode.FIRMWARE_ONLY),
    ({"identity": False, "claim": True}, IdentityMode.FIRMWARE_ONLY),
    ({}, IdentityMode.MINT),
    ({"factory_reset": True}, IdentityMode.MINT),
    ({"offline_pool": True}, IdentityMode.POOL),
    ({"claim": True}, IdentityMode.CLAIM),
    ({"restore_identity": True}, IdentityMode.RESTORE),
    ({"line_ca": True}, IdentityMode.LINE_CA),
    ({"line_ca": True, "factory_reset": True}, IdentityMode.LINE_CA),
])
def test_settings_give_one_mode(kw, mode):
    assert identity_mode(StationSettings(**kw)) is mode


def test_contradictions_name_the_page_label_and_the_flag():
    with pytest.raises(BoardError) as exc:
        identity_mode(StationSettings(claim=True, offline_pool=True))
    assert "'Claim certificate' (--claim)" in exc.value.message
    assert "'Offline: identities from the certificate pool' (--offline-pool)" in exc.value.message
    assert "contradict each other" in exc.value.message
    with pytest.raises(BoardError, match=r"'Line CA: sign certificates here, JITP' \(--line-ca\)"):
        identity_mode(StationSettings(line_ca=True, offline_pool=True))
    # one board's override (an answer to a restore offer) keeps the station's own mode
    pooled = StationSettings(offline_pool=True, restore_identity=True)
    assert identity_mode(pooled, check=False) is IdentityMode.POOL


def test_summary_is_what_the_tile_shows():
    ok = BoardResult("p", result="PASS", thing="fd-1", reflash=True, pending_sync=True)
    assert ok.summary() == "fd-1 online · re-flash · offline: registry sync pending"
    assert BoardResult("p", result="PASS").summary() == "flashed and verified"
    stopped = BoardResult("p", error="cancelled by the operator", stage="write")
    assert stopped.summary() == "stopped by the operator during write"
    failed = BoardResult("p", error="the board does not boot the new firmware", advice="The board ... flash again")
    assert failed.summary() == "The board ... flash again"
    assert issubclass(StageFailed, Exception) and StageFailed("boot", "x", "boot").step == "boot"
