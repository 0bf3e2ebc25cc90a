"""Offline station: a pool of pre-minted certificates, encrypted at rest, assigned to boards
while the network is down and synced to the registry (thing + attachments) when it is back.

While online, `CertPool.refill(cloud, n)` mints n ACTIVE certificates with the thing policy
attached (CreateKeysAndCertificate) and stores each private key sealed with the station data
key (fleetdesk.store.secretbox: Fernet, ``station.key`` 0600 beside the database, never in
it; pools from before keep opening with their ``certpool.key``); the database is 0600.
Offline, `take(mac, thing)` assigns one to a board; `sync(cloud)` later creates the thing and attaches the certificate,
idempotently, so the registry ends up as if the board had been flashed online. The pool also
keeps the endpoint, port, region and CA the devices need, so flashing needs no cloud call.

A row's life: ``free`` -> ``assigned`` (its board is being flashed; `release` gives it back
when nothing was written) -> ``pending`` (written and verified, `flashed`) -> ``synced``.
A board that fails after the write, or a crashed run, makes it ``failed`` (`fail`): never
synced nor handed out again, set INACTIVE at the next sync or refill (-> ``retired``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fleetdesk.errors import CloudError, FleetdeskError
from fleetdesk.paths import data_dir
from fleetdesk.store.ledger import Ledger, LedgerUnavailable, configured_ledger, is_postgres
from fleetdesk.store.secretbox import KEY_FILE, PREFIX, SecretBox

SHARE_FILE = "certpool-share.sqlite3"  # a line station's share of the line's pool
RECONNECT_S = 15.0
HEARTBEAT_S = 5.0  # a line station's pool share says it is alive (pool_shares.heartbeat_at, the line's clock)


def lease_s() -> float:
    """Seconds a share's rows stay its own without a heartbeat: then the other stations take
    its reserved, unused certificates back, and the station itself (offline) stops handing
    them out (``FLEETDESK_POOL_LEASE_S``; default 5 min: a station may flash from its share
    through a short outage of the line's database)."""
    return float(os.environ.get("FLEETDESK_POOL_LEASE_S", "") or 300.0)


def beat_every() -> float:
    """How often a share renews its lease (at least three times per lease)."""
    return min(HEARTBEAT_S, lease_s() / 3)


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

    def __init__(self, folder: Path | str | None = None, *, ledger: Ledger | str | None = None) -> None:
        folder = Path(folder) if folder else data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.box = SecretBox(folder / KEY_FILE, legacy=[folder / "certpool.key"])
        target = ledger if isinstance(ledger, Ledger) else (ledger or configured_ledger() or folder / "certpool.sqlite3")
        self.line: Ledger | None = None  # the line's pool (a shared ledger); self.ledger is then this station's share
        self._line_target = None
        if isinstance(target, Ledger) and target.shared:
            self._line_target, self.line = target.target, target
        elif not isinstance(target, Ledger) and is_postgres(str(target)):
            self._line_target = str(target)
            try:
                self.line = Ledger(target)
            except LedgerUnavailable:  # the line's database is away: this station's share only, for now
                self.line = None
        if self._line_target:
            target = folder / SHARE_FILE
        if isinstance(target, Ledger):
            assert not target.shared, "a shared ledger is the line's pool; this station keeps its own share"
            self.ledger = target
        else:
            self.ledger = Ledger(target)
        self._retry_at = 0.0
        self._lock = threading.RLock()
        self._sync_lock = threading.RLock()
        with self.ledger.tx() as tx:  # pools from before 'pending' existed: their assigned rows are flashed boards
            if tx.one("SELECT 1 AS x FROM meta WHERE k='states'") is None:
                tx.run("UPDATE pool SET state='pending' WHERE state='assigned'")
                tx.run("INSERT INTO meta(k, v) VALUES ('states', '2') ON CONFLICT(k) DO NOTHING")
            if self._line_target and tx.one("SELECT 1 AS x FROM meta WHERE k='share_id'") is None:
                tx.run("INSERT INTO meta(k, v) VALUES ('share_id', ?)", (json.dumps(uuid.uuid4().hex),))
        share = self.ledger.one("SELECT v FROM meta WHERE k='share_id'") if self._line_target else None
        self.share_id = json.loads(share["v"]) if share else ""  # written just above for a line's share
        self.reclaimed = 0  # rows of dead stations' shares this one gave back to the line
        self.share = 0  # certificates kept in this station's share ahead of need (to flash through an outage)
        self._share_lock = threading.Lock()
        self._stopping = threading.Event()
        self._beater: threading.Thread | None = None
        if self._line_target:
            self._start_beating()

    def _share(self) -> tuple[str, tuple]:
        """The SQL condition (and its parameters) for the free rows this station may hand out:
        on a line's shared ledger the ones sealed with this station's data key (the line key
        the stations share, or this station's own share of the pool), else every row."""
        kid = self.box.key_id()
        if kid is None:
            return "", ()
        mine = PREFIX + kid.encode() + b":"
        return " AND substr(key_enc, 1, ?) = ?", (len(mine), mine)

    def _sealed_rows(self) -> bool:
        """Whether keys sealed with the station key are on file (then a missing key is not
        silently replaced by a new one)."""
        if self._line_target:  # the line's pool: other stations' rows name their own keys
            return self.box.has_key()
        return self.ledger.one("SELECT 1 AS x FROM pool WHERE substr(key_enc, 1, ?) = ? LIMIT 1",
                               (len(PREFIX), PREFIX)) is not None

    @classmethod
    def existing(cls, folder: Path | str | None = None) -> "CertPool | None":
        """The pool in ``folder`` (default: the app data dir) if one was ever made, else None
        (nothing is created); on a line ledger, the line's pool."""
        folder = Path(folder) if folder else data_dir()
        if configured_ledger():
            return cls(folder)
        return cls(folder) if (folder / "certpool.sqlite3").exists() else None

    def close(self) -> None:
        """Stop the share's heartbeat and give its unused certificates back to the line (when
        it can be reached; otherwise they stay this station's, reclaimed after the lease)."""
        self._stopping.set()
        if self._line_target:
            try:
                self._give_back()
            except LedgerUnavailable:
                pass
        self.ledger.close()
        if self.line is not None:
            self.line.close()

    # --- this station's share: its heartbeat, its lease, a dead station's rows -----------
    def _start_beating(self) -> None:
        self._beat()

        def run() -> None:
            while not self._stopping.wait(beat_every()):
                self._beat()

        self._beater = threading.Thread(target=run, name="pool-share-heartbeat", daemon=True)
        self._beater.start()

    def _beat(self) -> bool:
        """Renew this share's lease in the line (and note when, locally); False when the line
        cannot be reached."""
        line = self.line if self.line is not None else self._line()
        if line is None:
            return False
        try:
            line.run("INSERT INTO pool_shares(share_id, host, heartbeat_at) VALUES (?, ?, " + line.now_sql + ")"
                     " ON CONFLICT(share_id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at, host=excluded.host",
                     (self.share_id, socket.gethostname()))
        except LedgerUnavailable:
            self.line = None
            return False
        self.ledger.run("INSERT INTO meta(k, v) VALUES ('beat_at', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                        (json.dumps(time.time()),))
        return True

    def _lease_left(self) -> float:
        """Seconds this share may still be used without the line (from its last heartbeat, by
        this station's clock, less a heartbeat's margin)."""
        row = self.ledger.one("SELECT v FROM meta WHERE k='beat_at'")
        last = json.loads(row["v"]) if row else 0.0
        return lease_s() - beat_every() - (time.time() - last)

    def _still_mine(self, certificate_id: str) -> bool:
        """Whether a row of this station's share may be handed out now: marked 'assigned' in
        the line if it is still this share's there (False: a lapsed lease let another station
        take it back); offline, while the lease lasts.

        Raises:
            PoolEmpty: offline, and the lease lapsed (the line may have given the rows to others).
        """
        line = self._line()
        if line is not None:
            try:
                return line.run("UPDATE pool SET state='assigned' WHERE certificate_id=? AND state='reserved'"
                                " AND (reserved_by=? OR reserved_by IS NULL)", (certificate_id, self.share_id)) == 1
            except LedgerUnavailable:
                self.line = None
        if self._lease_left() > 0:
            return True
        raise PoolEmpty(f"this station's share of the line's pool lapsed: the line's database has been away for more "
                        f"than {lease_s():.0f} s, so the other stations may have taken its certificates back",
                        "reconnect the station to the line's database (its share is checked again there)")

    @staticmethod
    def _lapsed_sql(line: Ledger) -> str:
        """The shares (but this one) whose lease lapsed; parameters: this share's id, the lease."""
        return "SELECT share_id FROM pool_shares WHERE share_id<>? AND " + line.now_sql + " - heartbeat_at >= ?"

    def reclaim(self, tx, line: Ledger) -> int:
        """Give back to the line the reserved, unused rows of every share whose lease lapsed (its
        station died or lost the database for longer than `lease_s`); in ``tx`` of ``line``."""
        n = tx.run("UPDATE pool SET state='free', reserved_by=NULL WHERE state='reserved' AND reserved_by IN ("
                   + self._lapsed_sql(line) + ")", (self.share_id, lease_s()))
        self.reclaimed += n
        return n

    def _give_back(self) -> int:
        """This share's free rows back to the line (a clean stop); returns how many."""
        line = self._line()
        if line is None:
            return 0
        ids = [r["certificate_id"] for r in self.ledger.all("SELECT certificate_id FROM pool WHERE state='free'")]
        if not ids:
            return 0
        with line.tx() as tx:
            tx.many("UPDATE pool SET state='free', reserved_by=NULL WHERE certificate_id=? AND state='reserved'"
                    " AND reserved_by=?", [(cid, self.share_id) for cid in ids])
        self.ledger.run("DELETE FROM pool WHERE state='free'")
        return len(ids)

    # --- the line's pool and this station's share of it ----------------------------------
    def _line(self) -> Ledger | None:
        """The line's pool when it can be reached now (tried again every RECONNECT_S), else None."""
        if not self._line_target:
            return None
        if self.line is None and time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + RECONNECT_S
            try:
                self.line = Ledger(self._line_target)
            except LedgerUnavailable:
                return None
        if self.line is not None and self._unpushed():
            self.push()
        return self.line

    def reserve(self, n: int) -> int:
        """Take up to ``n`` free certificates of the line's pool (sealed with this station's key)
        into this station's share, so it keeps flashing when the line's database is away; a row
        another station is taking is skipped. Returns how many were reserved."""
        line = self._line()
        if line is None or n <= 0:
            return 0
        cond, params = self._share()
        try:
            with line.tx() as tx:  # reserved in the line first: a row is never in two stations' shares
                self.reclaim(tx, line)  # a dead station's unused share first goes back to the line
                rows = tx.all("SELECT * FROM pool WHERE state='free'" + cond + " ORDER BY created LIMIT ?"
                              + line.skip_locked, (*params, n))
                meta = tx.all("SELECT k, v FROM meta")
                if rows:
                    tx.many("UPDATE pool SET state='reserved', reserved_by=? WHERE certificate_id=?",
                            [(self.share_id, r["certificate_id"]) for r in rows])
        except LedgerUnavailable:
            self.line = None
            return 0
        if rows:
            self._beat()  # the lease runs from now
        with self.ledger.tx() as local:  # (a crash right here leaves them 'reserved' in the line, reclaimed later)
            for r in rows:
                local.run("INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc,"
                          " created) VALUES (?,?,?,?,?) ON CONFLICT(certificate_id) DO NOTHING",
                          (r["certificate_id"], r["certificate_arn"], r["certificate_pem"],
                           bytes(r["key_enc"]), r["created"]))
            for m in meta:
                local.run("INSERT INTO meta(k, v) VALUES (?,?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                          (m["k"], m["v"]))
        return len(rows)

    def keep_share(self) -> int:
        """Top this station's share up to `share` free certificates from the line (when it can
        be reached); returns how many were reserved."""
        if not self._line_target or self.share <= 0:
            return 0
        with self._share_lock:
            have = self.ledger.scalar("SELECT COUNT(*) AS n FROM pool WHERE state='free'")
            return self.reserve(self.share - have) if have < self.share else 0

    def _unpushed(self) -> list[str]:
        row = self.ledger.one("SELECT v FROM meta WHERE k='unpushed'")
        return json.loads(row["v"]) if row else []

    def _push_later(self, ids: list[str]) -> None:
        ids = sorted(set(self._unpushed()) | set(ids))
        self.ledger.run("INSERT INTO meta(k, v) VALUES ('unpushed', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                        (json.dumps(ids),))

    def push(self, *ids: str) -> None:
        """Tell the line's pool what became of this station's rows (``ids``, and every row a
        lost database kept from hearing); idempotent. A free row stays 'reserved' there."""
        if not self._line_target:
            return
        todo = sorted(set(ids) | set(self._unpushed()))
        if not todo:
            return
        if self.line is None:
            self._push_later(todo)
            return
        try:
            with self.line.tx() as tx:
                for cid in todo:
                    r = self.ledger.one("SELECT state, mac, thing, attributes, synced FROM pool WHERE certificate_id=?",
                                        (cid,))
                    if r is None:
                        continue
                    tx.run("UPDATE pool SET state=?, mac=?, thing=?, attributes=?, synced=? WHERE certificate_id=?",
                           ("reserved" if r["state"] == "free" else r["state"], r["mac"], r["thing"], r["attributes"],
                            r["synced"], cid))
            self.ledger.run("DELETE FROM meta WHERE k='unpushed'")
        except LedgerUnavailable:
            self.line = None
            self._push_later(todo)

    # --- online -------------------------------------------------------------------------
    def refill(self, cloud, target: int, on_progress=None) -> int:
        """Mint certificates until ``target`` are free; returns how many were added.

        ``on_progress(level, target)`` is called after each certificate (the CLI's progress bar).
        """
        from fleetdesk.cloud.identity import DEFAULT_POLICY_NAME, ensure_policy

        added = 0
        try:
            ensure_policy(cloud.iot)
            self._set_meta(endpoint=cloud.endpoint, port=cloud.port, region=cloud.region,
                           ca_pem=cloud.ca_pem.decode())
            create = not self._sealed_rows()
            self.box.ensure_key(create=create)  # before minting: a key problem must not orphan a new cert
            self.retire_failed(cloud)  # certificates of boards that failed after the write: INACTIVE now
            store = self._line() or self.ledger  # the line's pool: every station of the line draws from it
            if self._line_target and store is self.ledger:
                raise CloudError("the line's ledger cannot be reached, so its pool cannot be refilled",
                                 "check the network and the PostgreSQL server, then refill again")
            while self.level() < target:
                cert = cloud.iot.create_keys_and_certificate(setAsActive=True)
                cloud.iot.attach_policy(policyName=DEFAULT_POLICY_NAME, target=cert["certificateArn"])
                store.run(
                    "INSERT INTO pool(certificate_id, certificate_arn, certificate_pem, key_enc, created)"
                    " VALUES (?,?,?,?,?)",
                    (cert["certificateId"], cert["certificateArn"], cert["certificatePem"],
                     self.box.seal(cert["keyPair"]["PrivateKey"].encode(), create=create), time.time()))
                added += 1
                if on_progress is not None:
                    on_progress(self.level(), target)
        except FleetdeskError:  # CloudError, or the station data key (SecretKeyError)
            raise
        except Exception as exc:
            raise CloudError(f"could not refill the certificate pool ({exc})", "check the network and profile") from exc
        return added

    def _set_meta(self, **values) -> None:
        for db in filter(None, (self.ledger, self._line())):
            with db.tx() as tx:
                for k, v in values.items():
                    tx.run("INSERT INTO meta(k, v) VALUES (?,?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                           (k, json.dumps(v)))

    def meta(self) -> dict:
        db = self.ledger
        if self._line_target and db.one("SELECT 1 AS x FROM meta WHERE k='endpoint'") is None:
            db = self._line() or db  # nothing reserved yet: the line's
        return {r["k"]: json.loads(r["v"]) for r in db.all("SELECT k, v FROM meta")
                if r["k"] not in ("states", "unpushed")}

    def level(self) -> int:
        """Free certificates left (on a line ledger: the ones this station can hand out: its
        share, and the line's free ones sealed with its key while the line can be reached)."""
        cond, params = self._share()
        mine = self.ledger.scalar("SELECT COUNT(*) AS n FROM pool WHERE state='free'", ())
        line = self._line()
        if line is not None:
            try:
                mine += line.scalar("SELECT COUNT(*) AS n FROM pool WHERE (state='free' OR (state='reserved' AND"
                                    " reserved_by IN (" + self._lapsed_sql(line) + ")))" + cond,
                                    (self.share_id, lease_s(), *params))  # a dead station's share is taken back
            except LedgerUnavailable:
                self.line = None
        return mine

    def line_level(self) -> int:
        """Free certificates left in the whole pool (every station's share; the reserved ones too)."""
        line = self._line()
        if line is None:
            return self.ledger.scalar("SELECT COUNT(*) AS n FROM pool WHERE state='free'")
        return line.scalar("SELECT COUNT(*) AS n FROM pool WHERE state IN ('free', 'reserved')")

    def pending(self) -> int:
        """Certificates assigned offline and not yet synced (boards flashing or flashed)."""
        db = self._line() if self._line_target else None
        return (db or self.ledger).scalar("SELECT COUNT(*) AS n FROM pool WHERE state IN ('assigned', 'pending')")

    # --- offline ------------------------------------------------------------------------
    def take(self, mac: str, thing: str, attributes: dict | None = None) -> PooledCert:
        """Assign a free certificate to a board (the same one again for the same MAC while it is
        not synced yet; never one retired after a failed or crashed run).

        Raises:
            PoolEmpty: nothing left: stop the station (refill when back online).
            SecretKeyError: the station data key is missing or different (nothing is assigned).
        """
        while True:  # boards of this station taking at once: one more from the line each time, until it is empty
            try:
                got = self._take(mac, thing, attributes)
            except PoolEmpty as exc:
                if "lapsed" in exc.message or not self.reserve(1):  # (every row reserved stays in this share)
                    raise
                continue
            if got is not None:
                self.keep_share()
                return got
            # None: the line took that row back (this share's lease had lapsed): the next one

    def _take(self, mac: str, thing: str, attributes: dict | None) -> PooledCert | None:
        cols = "SELECT certificate_id, certificate_arn, certificate_pem, key_enc FROM pool"
        with self.ledger.tx() as tx:
            row = tx.one(cols + " WHERE mac=? AND state IN ('assigned', 'pending')" + self.ledger.for_update,
                         (mac,))
            fresh = row is None
            if fresh:  # a row another station is taking right now is skipped, never handed out twice
                row = tx.one(cols + " WHERE state='free' ORDER BY created LIMIT 1" + self.ledger.skip_locked)
                if row is None:
                    raise PoolEmpty("the offline certificate pool is empty",
                                    "reconnect to the cloud to refill it (or use claim provisioning)")
            cid = row["certificate_id"]
            key = self.box.open(bytes(row["key_enc"]), f"the private key of pooled certificate {cid[:12]}").decode()
            if fresh:  # assigned only once the key opens: a key problem leaves the pool as it was
                tx.run("UPDATE pool SET state='assigned', mac=?, thing=?, attributes=? WHERE certificate_id=?",
                       (mac, thing, json.dumps(attributes or {}), cid))
            else:  # in flight again: a failure now retires it, and no backlog sync registers it meanwhile
                tx.run("UPDATE pool SET state='assigned' WHERE certificate_id=?", (cid,))
        if fresh and self._line_target:  # asked outside the local transaction (the line's lock is never awaited
            try:  # while this share's is held: push takes them the other way round)
                mine = self._still_mine(cid)
            except PoolEmpty:
                self.ledger.run("UPDATE pool SET state='free', mac=NULL, thing=NULL, attributes=NULL"
                                " WHERE certificate_id=?", (cid,))
                raise
            if not mine:
                self.ledger.run("DELETE FROM pool WHERE certificate_id=?", (cid,))  # the line's again, maybe another's
                return None
        self.push(cid)
        return PooledCert(cid, row["certificate_arn"], row["certificate_pem"], key)

    def release(self, certificate_id: str) -> None:
        """Give back a certificate whose board failed before it was written."""
        self._change("UPDATE pool SET state='free', mac=NULL, thing=NULL WHERE certificate_id=?"
                     " AND state='assigned'", certificate_id)

    def flashed(self, certificate_id: str) -> None:
        """Its board was written and verified: the row waits for a sync ('pending')."""
        self._change("UPDATE pool SET state='pending' WHERE certificate_id=? AND state='assigned'", certificate_id)

    def fail(self, certificate_id: str) -> bool:
        """Its board FAILed (or its run crashed) after the certificate was written: the row is
        never synced nor handed out again, and the certificate is set INACTIVE at the next
        sync or refill while online (`retire_failed`). Returns whether the row was assigned."""
        return self._change("UPDATE pool SET state='failed' WHERE certificate_id=?"
                            " AND state IN ('assigned', 'pending', 'synced')", certificate_id) == 1

    def retired(self, certificate_id: str) -> None:
        """The certificate of a failed row is INACTIVE now (or gone from the cloud)."""
        self._change("UPDATE pool SET state='retired' WHERE certificate_id=? AND state='failed'", certificate_id)

    def _change(self, sql: str, certificate_id: str) -> int:
        """A state change of a row: in this station's share (then told to the line), or, for a
        row of the line another station took (e.g. a dead station's, in recovery), in the line."""
        n = self.ledger.run(sql, (certificate_id,))
        if n:
            self.push(certificate_id)
            return n
        line = self._line()
        if line is not None and self.ledger.one("SELECT 1 AS x FROM pool WHERE certificate_id=?",
                                                (certificate_id,)) is None:
            try:
                return line.run(sql, (certificate_id,))
            except LedgerUnavailable:
                self.line = None
        return n

    def state(self, certificate_id: str) -> str | None:
        """The pool state of a certificate (free, assigned, pending, synced, failed, retired), or None
        when it is not a pooled certificate."""
        row = self.row(certificate_id)
        return row["state"] if row else None

    def row(self, certificate_id: str) -> dict | None:
        """A pooled certificate's state, mac and thing (None: not in the pool); no key."""
        row = self.ledger.one("SELECT state, mac, thing FROM pool WHERE certificate_id=?", (certificate_id,))
        line = self._line() if row is None else None
        if line is not None:
            try:
                return line.one("SELECT state, mac, thing FROM pool WHERE certificate_id=?", (certificate_id,))
            except LedgerUnavailable:
                self.line = None
        return row

    def failed(self) -> int:
        """Certificates written to boards that failed, still to be set INACTIVE."""
        db = self._line() if self._line_target else None
        return (db or self.ledger).scalar("SELECT COUNT(*) AS n FROM pool WHERE state='failed'")

    def retire_failed(self, cloud) -> list[str]:
        """Set INACTIVE every certificate of a failed row (a certificate already deleted from
        the cloud counts as done); returns the ids retired.

        Raises:
            CloudError: the cloud cannot be reached (the rows stay 'failed' for the next time).
        """
        ids = [r["certificate_id"] for r in self.ledger.all("SELECT certificate_id FROM pool WHERE state='failed'")]
        line = self._line()
        if line is not None:  # a dead station's failed rows too: any station of the line may retire them
            try:
                ids += [r["certificate_id"] for r in line.all("SELECT certificate_id FROM pool WHERE state='failed'")
                        if r["certificate_id"] not in ids]
            except LedgerUnavailable:
                self.line = None
        done = []
        for cid in ids:
            try:
                cloud.deactivate(cid)
            except Exception as exc:
                if not gone(exc):
                    if not _refused(exc):
                        raise CloudError(f"could not deactivate pooled certificate {cid[:12]} ({exc})",
                                         "check the network; the next sync or refill retries") from exc
                    continue  # refused for this one: retried at the next sync, the others go on
            self.retired(cid)
            done.append(cid)
        return done

    def sync(self, cloud, certificate_id: str | None = None) -> "SyncReport":
        """Create the things and attach their certificates for boards flashed offline (every
        'pending' row, or only ``certificate_id``'s, which may still be 'assigned': its board
        is being flashed), and set INACTIVE the certificates of boards that failed after the
        write (`retire_failed`). A row whose board is still being flashed is never synced by
        another board's sync.

        Idempotent: an existing thing is reused, a repeated attach is harmless. A row the cloud
        refuses (e.g. AccessDenied, an invalid name) is left as it is and the others go on.

        Returns:
            The synced thing names; ``.failed`` lists the rows that could not be synced
            (certificate_id, thing, reason, refused).

        Raises:
            CloudError: the cloud cannot be reached (nothing more is tried; the next sync
                resumes).
        """
        with self._sync_lock:  # one sync at a time: boards finishing together never register a row twice
            return self._sync(cloud, certificate_id)

    def _sync(self, cloud, certificate_id: str | None) -> "SyncReport":
        cols = "SELECT certificate_id, certificate_arn, thing, attributes, state FROM pool"
        if certificate_id is None:
            found = self.ledger.all(cols + " WHERE state='pending' ORDER BY created")
        else:
            found = self.ledger.all(cols + " WHERE certificate_id=?", (certificate_id,))
        rows = [(r["certificate_id"], r["certificate_arn"], r["thing"], r["attributes"], r["state"]) for r in found]
        report = SyncReport()
        if certificate_id is not None and (not rows or rows[0][4] not in ("assigned", "pending", "synced")):
            state = rows[0][4] if rows else "not in the pool"
            report.failed.append(SyncFailure(certificate_id, rows[0][2] if rows else "", f"its pool row is {state}", True))
            rows = []
        for cert_id, arn, thing, attrs, state in rows:
            if state == "synced":
                report.append(thing)
                continue
            try:
                self._register(cloud, thing, arn, json.loads(attrs or "{}"))
            except Exception as exc:
                if not _refused(exc):
                    raise CloudError(f"could not sync {thing} to the registry ({exc})",
                                     "check the network; the next sync resumes where this one stopped") from exc
                report.failed.append(SyncFailure(cert_id, thing, str(exc), True))
                continue
            done = self.ledger.run("UPDATE pool SET state='synced', synced=? WHERE certificate_id=?"
                                   " AND state IN ('assigned', 'pending')", (time.time(), cert_id))
            if done:
                self.push(cert_id)
            if not done and self._state(cert_id) == "synced":  # another sync registered it meanwhile
                report.append(thing)
                continue
            if not done:  # failed or retired meanwhile (its board FAILed, or a recovery retired it)
                report.failed.append(SyncFailure(cert_id, thing, "its board failed while it was synced", True))
                continue
            report.append(thing)
        self.retire_failed(cloud)
        return report

    def _state(self, certificate_id: str) -> str | None:
        row = self.ledger.one("SELECT state FROM pool WHERE certificate_id=?", (certificate_id,))
        return row["state"] if row else None

    @staticmethod
    def _register(cloud, thing: str, arn: str, attributes: dict) -> None:
        try:
            cloud.iot.describe_thing(thingName=thing)
        except Exception as exc:
            if not gone(exc):
                raise
            cloud.iot.create_thing(thingName=thing, attributePayload={"attributes": attributes})
        cloud.iot.attach_thing_principal(thingName=thing, principal=arn)


@dataclass
class SyncFailure:
    """A pool row `CertPool.sync` could not register (the cloud answered and refused)."""

    certificate_id: str
    thing: str
    reason: str
    refused: bool = True


class SyncReport(list):
    """The things `CertPool.sync` registered (a list of names); ``failed``: rows it could not."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.failed: list[SyncFailure] = []


def _code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return (response or {}).get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def gone(exc: BaseException) -> bool:
    """The cloud says the resource does not exist (ResourceNotFoundException)."""
    return _code(exc) == "ResourceNotFoundException" or type(exc).__name__ == "ResourceNotFoundException"


def _refused(exc: BaseException) -> bool:
    """The cloud answered and said no (AccessDenied, InvalidRequest...): not a network problem
    that a retry later would fix. Throttling and server errors count as unreachable."""
    code = _code(exc)
    if not code:
        return False
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0  # a dict: _code found one
    return status < 500 and "Throttl" not in code and code not in ("RequestTimeout", "ServiceUnavailable")
