"""Secrets at rest on a station: identity backups and pooled private keys are sealed with the
station data key (station.key, 0600); the databases are 0600; a database without its key
gives a clear error naming the key file; backups stored in clear by older versions restore."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from fleetdesk.boards.certpool import CertPool
from fleetdesk.boards.fsimage import build_image
from fleetdesk.boards.vfs import identity_files
from fleetdesk.paths import data_dir
from fleetdesk.store.production import ProductionDB
from fleetdesk.store.secretbox import SecretBox, SecretKeyError, key_id

MAC = "24:6f:28:aa:bb:cc"


def _identity_image() -> tuple[bytes, bytes]:
    """A real littlefs vfs image holding an identity, and the DER private key inside it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fd-246f28aabbcc")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    files = {"/config.json": json.dumps({"thing_name": "fd-246f28aabbcc", "pop": "p" * 32}).encode(),
             "/certs/ca.der": cert_der, "/certs/cert.der": cert_der, "/certs/key.der": key_der}
    image = build_image(files, 0x40000)
    assert identity_files(image)["/certs/key.der"] == key_der
    return image, key_der


def _on_disk(db_path: Path) -> bytes:
    """Every byte SQLite keeps for a database: the file and its -wal."""
    return b"".join(p.read_bytes() for p in (db_path, db_path.with_name(db_path.name + "-wal")) if p.exists())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_is_sealed_on_disk_yet_restores_and_files_are_0600(tmp_path):
    image, key_der = _identity_image()
    path = tmp_path / "prod.sqlite3"
    db = ProductionDB(path)
    backup_id = db.save_backup(MAC, "vfs", 0x200000, image)
    raw = _on_disk(path)
    assert b"fdsb1:" in raw, "the backup row is not on disk at all"
    assert key_der not in raw and key_der[-32:] not in raw and b"fd-246f28aabbcc" not in raw
    offset, data = db.latest_backup(MAC, "vfs")
    assert (offset, data) == (0x200000, image)
    assert identity_files(data)["/certs/key.der"] == key_der  # restorable: the identity parses back
    assert db.backup_formats() == {"fdsb1": 1} and backup_id == 1

    key_file = data_dir() / "station.key"
    assert key_file.exists() and _mode(key_file) == 0o600
    assert db.box.key_id() == key_id(key_file.read_bytes())
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    assert wal.exists() and shm.exists()
    assert {p.name: _mode(p) for p in (path, wal, shm)} == {p.name: 0o600 for p in (path, wal, shm)}
    assert key_file.read_bytes().strip() not in raw  # the key never lives in the database
    db.close()


def test_databases_created_0600_even_with_a_loose_umask(tmp_path):
    old = os.umask(0o000)
    try:
        db = ProductionDB(tmp_path / "a" / "production.sqlite3")
        db.start_run()
        pool = CertPool(tmp_path / "b")
        pool.level()
    finally:
        os.umask(old)
    for folder, name in (("a", "production.sqlite3"), ("b", "certpool.sqlite3")):
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / folder / (name + suffix)
            assert p.exists() and _mode(p) == 0o600, (p, oct(_mode(p)))
    db.close()
    pool.close()


def test_database_copied_without_its_key_is_a_clear_error_and_loses_nothing(tmp_path, monkeypatch):
    image, _ = _identity_image()
    db = ProductionDB(tmp_path / "station-a" / "prod.sqlite3")
    db.save_backup(MAC, "vfs", 0x200000, image)
    db.close()
    key_a = data_dir() / "station.key"
    copy = tmp_path / "station-b" / "prod.sqlite3"
    copy.parent.mkdir()
    shutil.copy(tmp_path / "station-a" / "prod.sqlite3", copy)

    monkeypatch.setenv("FLEETDESK_DATA_DIR", str(tmp_path / "station-b-data"))  # another machine
    other = ProductionDB(copy)
    missing = data_dir() / "station.key"
    with pytest.raises(SecretKeyError) as err:
        other.latest_backup(MAC, "vfs")
    assert str(missing) in err.value.message and "missing" in err.value.message
    assert "station.key" in err.value.advice and "nothing was deleted" in err.value.advice
    assert key_id(key_a.read_bytes()) in err.value.message  # names the key it needs
    # a new backup on this machine must not quietly make a new key that would hide the old rows
    with pytest.raises(SecretKeyError, match="no new key is made"):
        other.save_backup(MAC, "vfs", 0x200000, image)
    assert not missing.exists() and other.backup_formats() == {"fdsb1": 1}

    # another station's key: named, with both fingerprints
    SecretBox(missing).ensure_key()
    with pytest.raises(SecretKeyError) as err:
        other.latest_backup(MAC, "vfs")
    assert key_id(key_a.read_bytes()) in err.value.message and key_id(missing.read_bytes()) in err.value.message

    # the right key copied over (with loose permissions): restores, and is tightened to 0600
    shutil.copy(key_a, missing)
    os.chmod(missing, 0o644)
    fresh = ProductionDB(copy)
    assert fresh.latest_backup(MAC, "vfs") == (0x200000, image)
    assert _mode(missing) == 0o600


def test_backup_stored_in_clear_by_an_older_version_still_restores_then_seals(tmp_path):
    image, key_der = _identity_image()
    path = tmp_path / "production.sqlite3"
    old = sqlite3.connect(path)  # the schema before backups were sealed (no format column)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE backups (id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, ts REAL NOT NULL,"
                " label TEXT, offset INTEGER, data BLOB NOT NULL)")
    old.execute("INSERT INTO backups(mac, ts, label, offset, data) VALUES (?,?,?,?,?)",
                (MAC, time.time(), "vfs", 0x200000, image))
    old.commit()
    old.close()
    os.chmod(path, 0o644)

    db = ProductionDB(path)
    assert _mode(path) == 0o600  # an existing database is tightened too
    assert db.backup_formats() == {"clear": 1}
    assert db.latest_backup(MAC, "vfs") == (0x200000, image)
    assert not (data_dir() / "station.key").exists()  # reading clear rows needs no key

    assert db.seal_clear_backups() == 1 and db.seal_clear_backups() == 0
    assert db.backup_formats() == {"fdsb1": 1}
    assert db.latest_backup(MAC, "vfs") == (0x200000, image)
    assert key_der not in _on_disk(path)  # the clear pages were zeroed, not just unlinked
    db.close()


def test_pool_keys_sealed_legacy_pool_still_opens_and_missing_key_assigns_nothing(tmp_path):
    from cryptography.fernet import Fernet

    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    folder = tmp_path / "pool"
    pool = CertPool(folder)
    legacy = Fernet.generate_key()  # a pool made before the station key: certpool.key, bare tokens
    (folder / "certpool.key").write_bytes(legacy)
    os.chmod(folder / "certpool.key", 0o600)
    rows = [("a" * 64, Fernet(legacy).encrypt(pem.encode())), ("b" * 64, pool.box.seal(pem.encode()))]
    for i, (cert_id, blob) in enumerate(rows):
        pool.ledger.run("INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created)"
                        " VALUES (?,?,?,?,?)", (cert_id, f"arn:aws:iot:us-east-1:1:cert/{cert_id}", "CERT", blob, i))
    raw = (folder / "certpool.sqlite3").read_bytes() + (folder / "certpool.sqlite3-wal").read_bytes()
    assert b"MIGHAgEAMBMG" not in raw and b"fdsb1:" in raw

    first = pool.take("00:00:00:00:00:01", "fd-1")
    assert first.certificate_id == "a" * 64 and first.private_key_pem == pem  # legacy row still opens
    assert pem not in repr(first) and "MIGH" not in repr(first)

    pool.close()
    (folder / "station.key").unlink()  # the station key is lost: after a restart the sealed row cannot open
    pool = CertPool(folder)
    with pytest.raises(SecretKeyError) as err:
        pool.take("00:00:00:00:00:02", "fd-2")
    assert str(folder / "station.key") in err.value.message
    assert pool.level() == 1 and pool.pending() == 1  # nothing was assigned to the failed board
    pool.close()


PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yRxxnn5dN3vVRaENlVe2ZBp9xPxoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"


def test_journal_and_attempt_rows_never_keep_a_quoted_key_and_the_export_zip_has_none(tmp_path):
    import zipfile

    from fleetdesk.boards.export import export_attempt

    path = tmp_path / "p.sqlite3"
    db = ProductionDB(path)
    run = db.start_run(port="socket://x")
    db.step(run, "identity", "failed", {"error": f"boom {PEM} tail", "thing": "fd-1"})
    db.step(run, "write", "failed", f"ValueError: bad key {PEM!r}")
    attempt = db.finish(run, {"port": "socket://x", "mac": MAC, "result": "FAIL", "error": f"cloud said {PEM}"})
    assert b"MHcCAQEEIBkg4LVWM9nu" not in _on_disk(path)
    steps = db.journal(run)
    assert json.loads(steps[0]["detail"]) == {"error": "boom [private key removed]\n tail", "thing": "fd-1"}
    assert steps[1]["detail"].startswith("ValueError: bad key '[private key removed]")
    assert db.attempt(attempt)["error"] == "cloud said [private key removed]\n"

    # rows written before keys were scrubbed at the source: the export still leaves them out
    db.ledger.run("INSERT INTO journal(run_id, ts, step, status, detail) VALUES (?,?,?,?,?)",
                  (run, time.time(), "backup", "failed", json.dumps({"error": PEM})))
    db.ledger.run("UPDATE attempts SET error=? WHERE id=?", (f"old {PEM}", attempt))
    db.save_logs(run, console=["boot", *PEM.splitlines(), "online"], esptool=["Hash of data verified."])
    with zipfile.ZipFile(export_attempt(db, attempt, tmp_path / "board.zip")) as z:
        blob = b"".join(z.read(n) for n in z.namelist())
        journal = json.loads(z.read("journal.json"))
        row = json.loads(z.read("attempt.json"))
    assert b"MHcCAQEEIBkg4LVWM9nu" not in blob and b"PRIVATE KEY-----" not in blob
    assert json.loads(journal[-1]["detail"]) == {"error": "[private key removed]\n"}
    assert row["error"] == "old [private key removed]\n" and b"online" in blob


def test_a_write_that_replaces_an_identity_can_check_its_backup_key_first(tmp_path, monkeypatch):
    image, _ = _identity_image()
    db = ProductionDB(tmp_path / "p.sqlite3")
    db.check_backup_key()  # first use: the key is made (0600)
    assert _mode(data_dir() / "station.key") == 0o600
    db.save_backup(MAC, "vfs", 0, image)
    db.close()
    monkeypatch.setenv("FLEETDESK_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(SecretKeyError, match="station.key is missing"):
        ProductionDB(tmp_path / "p.sqlite3").check_backup_key()


def test_identities_never_show_their_key_in_a_repr():
    from fleetdesk.boards.identity import MintedIdentity
    from fleetdesk.cloud.identity import DeviceIdentity

    minted = MintedIdentity("fd-1", "c" * 64, "CERT", PEM, "pop-secret-123", Path("/k"))
    device = DeviceIdentity("fd-1", "c" * 64, "arn", "CERT", PEM)
    for text in (repr(minted), str(minted), repr(device), f"{[minted]}"):
        assert "MHcCAQ" not in text and "pop-secret-123" not in text and "fd-1" in text


def test_key_file_removed_while_running_refuses_the_next_backup_instead_of_sealing_blind(tmp_path):
    image, _ = _identity_image()
    db = ProductionDB(tmp_path / "p.sqlite3")
    db.save_backup(MAC, "vfs", 0, image)
    key_file = data_dir() / "station.key"
    key_file.unlink()
    with pytest.raises(SecretKeyError, match="missing"):
        db.save_backup(MAC, "vfs", 0, image)
    assert not key_file.exists() and db.backup_formats() == {"fdsb1": 1}


def test_concurrent_first_use_makes_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k" / "station.key"
    with ThreadPoolExecutor(8) as ex:
        keys = set(ex.map(lambda _: SecretBox(path).ensure_key(), range(16)))
    assert keys == {path.read_bytes().strip()} and _mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["station.key"]  # no temp files left
