"""Which identity a station writes into each board: one mode, decided once from the settings.

The station's settings carry the operator's choices as switches (the Stations page's check
boxes, the CLI's flags); :func:`identity_mode` turns them into one :class:`IdentityMode` and
refuses combinations that contradict each other, naming the settings as the operator sees
them (the page's label and the CLI flag).
"""

from __future__ import annotations

from enum import Enum

from fleetdesk.errors import BoardError


class IdentityMode(Enum):
    """Where a board's identity comes from."""

    FIRMWARE_ONLY = "firmware-only"  # no identity written: the board keeps the one it has
    MINT = "mint"  # a thing and certificate per board, created in the cloud while flashing
    POOL = "pool"  # a pre-minted certificate from the offline pool
    CLAIM = "claim"  # the claim certificate: the board provisions itself at first boot
    RESTORE = "restore"  # the identity on file written back (a board that lost its flash)
    LINE_CA = "line-ca"  # a certificate signed by the line's CA here; AWS creates the thing at first connect (JITP)


# setting -> how the operator sees it: the Stations page's label and the CLI flag
SETTING_NAMES = {
    "restore_identity": "'Restore identity' (--restore-identity)",
    "factory_reset": "'Factory reset' (--factory-reset)",
    "offline_pool": "'Offline: identities from the certificate pool' (--offline-pool)",
    "claim": "'Claim certificate' (--claim)",
    "line_ca": "'Line CA: sign certificates here, JITP' (--line-ca)",
}
_CONTRADICTIONS = (("restore_identity", "factory_reset"), ("claim", "offline_pool"),
                   ("restore_identity", "offline_pool"), ("restore_identity", "claim"),
                   ("line_ca", "claim"), ("line_ca", "offline_pool"), ("line_ca", "restore_identity"))


def identity_mode(settings, *, check: bool = True) -> IdentityMode:
    """The identity mode `settings` (a StationSettings) ask for.

    Args:
        check: refuse contradicting settings (the station does, before any board); False
            for one board's overrides (an answer to a restore offer), where the station's own
            mode keeps precedence: claim, the line CA, then the pool, then restore.

    Raises:
        BoardError: two settings contradict each other.
    """
    for a, b in _CONTRADICTIONS if check else ():
        if getattr(settings, a) and getattr(settings, b):
            raise BoardError(f"{SETTING_NAMES[a]} and {SETTING_NAMES[b]} contradict each other",
                             "choose one of them")
    if not settings.identity:
        return IdentityMode.FIRMWARE_ONLY  # identity off: no identity is written, whatever else is on
    if settings.claim:
        return IdentityMode.CLAIM
    if getattr(settings, "line_ca", False):
        return IdentityMode.LINE_CA
    if settings.offline_pool:
        return IdentityMode.POOL
    if settings.restore_identity:
        return IdentityMode.RESTORE
    return IdentityMode.MINT
