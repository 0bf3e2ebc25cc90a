"""One-click per-board export: a zip with the attempt, its journal, console log, esptool
trace and the bundle SHA-256 — for a support ticket. Never private keys."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from fleetdesk.errors import BoardError
from fleetdesk.store.production import ProductionDB, redact, scrub


def export_attempt(db: ProductionDB, attempt_id: int, path: Path | str) -> Path:
    """Write ``path`` (a .zip) for one attempt; returns the path.

    Contents: attempt.json (the production row, incl. bundle_sha256), journal.json (every
    pipeline step with timestamps), console.log, esptool.log, README.txt.

    Raises:
        BoardError: no such attempt.
    """
    row = scrub(db.attempt(attempt_id))  # rows journaled before keys were scrubbed at the source
    if row is None:
        raise BoardError(f"no production attempt #{attempt_id}", "pick a board that has been flashed")
    run_id = row.get("run_id")
    journal = scrub(db.journal(run_id)) if run_id else []
    logs = db.logs(run_id) if run_id else {}
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("attempt.json", json.dumps(row, indent=1))
        z.writestr("journal.json", json.dumps(journal, indent=1))
        z.writestr("console.log", "\n".join(redact(logs.get("console", "").splitlines())) + "\n")
        z.writestr("esptool.log", "\n".join(redact(logs.get("esptool", "").splitlines())) + "\n")
        z.writestr("README.txt", (
            f"Fleetdesk flash record for {row.get('mac') or 'unknown MAC'} on {row.get('port')}\n"
            f"result {row.get('result')}  thing {row.get('thing')}  certificate {row.get('certificate_id')}\n"
            f"bundle SHA-256 {row.get('bundle_sha256')}\n"
            "Private keys are never included.\n"))
    return path
