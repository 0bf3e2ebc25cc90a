"""Offline station: a pool of pre-minted certificates, encrypted at rest, assigned to boards
while the network is down and synced to the registry (thing + attachments) when it is back.

While online, `CertPool.refill(cloud, n)` mints n ACTIVE certificates with the thing policy
attached (CreateKeysAndCertificate) and stores each private key sealed with the station data
key (fleetdesk.store.secretbox: Fernet, ``station.key`` 0600 beside the database, never in
it; pools from before keep opening with their ``certpool.key``); the database is 0600.
Offline, `take(mac, thing)` assigns one to a board; `sync(cloud)` later creates the thing and attaches the certificate,
idempotently, so the registry ends up as if the board had been flashed online. The pool also
keeps the endpoint, port, region and CA the devices need, so flashing needs no cloud call.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleetdesk.errors import CloudError, FleetdeskError
from fleetdesk.paths import data_dir
from fleetdesk.store.secretbox import KEY_FILE, PREFIX, SecretBox, private_db_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pool (
    certificate_id TEXT PRIMARY KEY, certificate_arn TEXT NOT NULL, certificate_pem TEXT NOT NULL,
    key_enc BLOB NOT NULL, created REAL NOT NULL, mac TEXT, thing TEXT, attributes TEXT,
    state TEXT NOT NULL DEFAULT 'free', synced REAL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


class PoolEmpty(CloudError):
    """No certificate is left in the offline pool."""


@dataclass
class PooledCert:
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)  # never in a log line or traceback


class CertPool:
    """The pool database (``certpool.sqlite3``, 0600) and the station data key (``station.key``,
    0600) its private keys are sealed with.

    Args:
        folder: where both live (default: the app data dir).
    """

    def __init__(self, folder: Path | str | None = None) -> None:
        folder = Path(folder) if folder else data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.box = SecretBox(folder / KEY_FILE, legacy=[folder / "certpool.key"])
        self._lock = threading.RLock()
        self._db = sqlite3.connect(private_db_file(folder / "certpool.sqlite3"), check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def _sealed_rows(self) -> bool:
        """Whether keys sealed with the station key are on file (then a missing key is not
        silently replaced by a new one)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM pool WHERE substr(key_enc, 1, ?) = ? LIMIT 1",
                                    (len(PREFIX), PREFIX)).fetchone() is not None

    def close(self) -> None:
        self._db.close()

    # --- online -------------------------------------------------------------------------
    def refill(self, cloud, target: int) -> int:
        """Mint certificates until ``target`` are free; returns how many were added."""
        from fleetdesk.cloud.identity import DEFAULT_POLICY_NAME, ensure_policy

        added = 0
        try:
            ensure_policy(cloud.iot)
            self._set_meta(endpoint=cloud.endpoint, port=cloud.port, region=cloud.region,
                           ca_pem=cloud.ca_pem.decode())
            create = not self._sealed_rows()
            self.box.ensure_key(create=create)  # before minting: a key problem must not orphan a new cert
            while self.level() < target:
                cert = cloud.iot.create_keys_and_certificate(setAsActive=True)
                cloud.iot.attach_policy(policyName=DEFAULT_POLICY_NAME, target=cert["certificateArn"])
                with self._lock:
                    self._db.execute(
                        "INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created)"
                        " VALUES (?,?,?,?,?)",
                        (cert["certificateId"], cert["certificateArn"], cert["certificatePem"],
                         self.box.seal(cert["keyPair"]["PrivateKey"].encode(), create=create), time.time()))
                added += 1
        except FleetdeskError:  # CloudError, or the station data key (SecretKeyError)
            raise
        except Exception as exc:
            raise CloudError(f"could not refill the certificate pool ({exc})", "check the network and profile") from exc
        return added

    def _set_meta(self, **values) -> None:
        with self._lock:
            for k, v in values.items():
                self._db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES (?,?)", (k, json.dumps(v)))

    def meta(self) -> dict:
        with self._lock:
            return {k: json.loads(v) for k, v in self._db.execute("SELECT k, v FROM meta")}

    def level(self) -> int:
        """Free certificates left."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pool WHERE state='free'").fetchone()[0]

    def pending(self) -> int:
        """Certificates assigned offline and not yet synced."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pool WHERE state='assigned'").fetchone()[0]

    # --- offline ------------------------------------------------------------------------
    def take(self, mac: str, thing: str, attributes: dict | None = None) -> PooledCert:
        """Assign a free certificate to a board (the same one again for the same MAC).

        Raises:
            PoolEmpty: nothing left: stop the station (refill when back online).
            SecretKeyError: the station data key is missing or different (nothing is assigned).
        """
        with self._lock:
            row = self._db.execute("SELECT certificate_id, certificate_arn, certificate_pem, key_enc FROM pool"
                                   " WHERE mac=? AND state='assigned'", (mac,)).fetchone()
            fresh = row is None
            if fresh:
                row = self._db.execute("SELECT certificate_id, certificate_arn, certificate_pem, key_enc FROM pool"
                                       " WHERE state='free' ORDER BY created LIMIT 1").fetchone()
                if row is None:
                    raise PoolEmpty("the offline certificate pool is empty",
                                    "reconnect to the cloud to refill it (or use claim provisioning)")
            key = self.box.open(row[3], f"the private key of pooled certificate {row[0][:12]}").decode()
            if fresh:  # assigned only once the key opens: a key problem leaves the pool as it was
                self._db.execute("UPDATE pool SET state='assigned', mac=?, thing=?, attributes=?"
                                 " WHERE certificate_id=?", (mac, thing, json.dumps(attributes or {}), row[0]))
        return PooledCert(row[0], row[1], row[2], key)

    def release(self, certificate_id: str) -> None:
        """Give back a certificate whose board failed before it was written."""
        with self._lock:
            self._db.execute("UPDATE pool SET state='free', mac=NULL, thing=NULL WHERE certificate_id=?"
                             " AND state='assigned'", (certificate_id,))

    def sync(self, cloud) -> list[str]:
        """Create the things and attach their certificates for everything assigned offline.

        Idempotent: an existing thing is reused, a repeated attach is harmless. Returns the
        synced thing names.
        """
        from botocore.exceptions import ClientError

        with self._lock:
            rows = self._db.execute("SELECT certificate_id, certificate_arn, thing, attributes FROM pool"
                                    " WHERE state='assigned'").fetchall()
        done = []
        for cert_id, arn, thing, attrs in rows:
            attributes = json.loads(attrs or "{}")
            try:
                try:
                    cloud.iot.describe_thing(thingName=thing)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                        raise
                    cloud.iot.create_thing(thingName=thing, attributePayload={"attributes": attributes})
                cloud.iot.attach_thing_principal(thingName=thing, principal=arn)
            except Exception as exc:
                raise CloudError(f"could not sync {thing} to the registry ({exc})",
                                 "check the network; the next sync resumes where this one stopped") from exc
            with self._lock:
                self._db.execute("UPDATE pool SET state='synced', synced=? WHERE certificate_id=?", (time.time(), cert_id))
            done.append(thing)
        return done
