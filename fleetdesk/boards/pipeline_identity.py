"""The identity steps of a station pipeline: which identity a board gets, and from where.

`IdentitySteps` is mixed into `fleetdesk.boards.station.BoardPipeline`; its `_prepare` runs
once the worker is connected to the board (same connection) and returns the plan to write:
the bundle with the device's /config.json and /certs/* in its vfs image.

It first waits for what the worker read from the board (`fleetdesk.boards.vfsprobe`), then
decides: the claim certificate (claim mode), the offline pool, the identity on file written
back (restore), the board's own ACTIVE identity kept (also with identity off: a firmware-only
flash), a restore offered when the identity on file is missing on the board (or a question when
its certificate was deactivated elsewhere), or a new identity, minted ahead for boards the
database has never seen. Whatever a write replaces is backed up first.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fleetdesk.boards.identity_mode import IdentityMode
from fleetdesk.boards.identity_sources import BoardFacts, source_for
from fleetdesk.errors import FleetdeskError

if TYPE_CHECKING:
    from fleetdesk.boards.station import BoardResult, StationSettings


class IdentityMissing(FleetdeskError):
    """The board's identity is on file but not on the board: a restore is offered."""


class IdentitySteps:
    """Identity preparation for `BoardPipeline` (uses its settings, db, cloud, pool, result,
    ``_journal``, ``_event``, ``_cancel`` and ``_job``)."""

    # What the host (BoardPipeline.__init__) sets, declared for the type checker.
    settings: StationSettings
    result: BoardResult
    mode: IdentityMode
    plan: Any  # FlashPlan
    db: Any  # ProductionDB
    cloud: Any  # CloudTarget, or None without identity
    pool: Any  # the offline certificate pool, or None
    port: str
    _device_target: Any
    _cancel: threading.Event
    _run_id: str | None
    _minted: Any  # the MintedIdentity made for this board, None until minted

    if TYPE_CHECKING:
        def _journal(self, step: str, status: str, detail: Any = "", **fields: Any) -> None: ...

        def _event(self, **ev: Any) -> None: ...

    def _prepare(self, info: dict):
        from fleetdesk.boards.identity import thing_name_for

        mac = info.get("mac")
        self.result.chip, self.result.mac = info.get("chip"), mac
        self._journal("detect", "done", {k: info.get(k) for k in ("chip", "mac", "revision", "flash_size")}, mac=mac)
        if mac and self._run_id and hasattr(self.db, "lock_board"):  # two stations never give one board two identities
            self.db.lock_board(mac, self._run_id, self.settings.station)
        self.plan.check_chip(info.get("chip"))
        self.plan.check_fits(info.get("flash_bytes"))
        if self.mode is IdentityMode.FIRMWARE_ONLY:
            return source_for(self.mode).prepare(self, BoardFacts(info, mac, None, None, ""))
        if self._cancel.is_set():
            raise FleetdeskError("cancelled by the operator")
        self._event(stage="identity")
        self._journal("identity", "begin")
        known = self.db.device(mac) if mac else None
        serial = self.db.serial_for(mac) if mac and "{serial" in self.settings.name_template else 0
        named = thing_name_for(self.settings.name_template, mac or "", info.get("chip") or "", serial=serial)
        self._ahead = None
        if known is None and self.cloud is not None and self.mode is IdentityMode.MINT:
            self._ahead = self._mint_ahead(named, mac)  # a new board, most likely: mint while it is read
        try:
            return self._decide(info, known, named, mac)
        finally:
            self._drop_unused_ahead()

    def _firmware_only(self, mac):
        """Identity off: the firmware changes, the board's identity does not (its files are
        written back, no cloud call), unless the operator chose a factory reset."""
        board = self._board_identity()
        if board is None:
            return self.plan
        self._check_product(None, board)  # another product's board does not get this firmware unasked
        if board.found and not self.settings.factory_reset:
            return self._keep_board_identity(board)
        self._backup_replaced(mac, board)
        return self.plan

    def _decide(self, info, known, named: str, mac):
        """Read what the board carries, then let the mode's source decide (boards/identity_sources.py)."""
        board = self._board = self._board_identity()
        self._check_product(known, board)
        on_board = board is not None and board.found
        thing = known.thing if known and known.thing else board.thing if on_board else named
        facts = BoardFacts(info, mac, known, board, thing)
        if self.mode is not IdentityMode.CLAIM:  # a claimed board's identity is the cloud's, not on file here
            self.result.identity_on_file = facts.on_file
        return source_for(self.mode).prepare(self, facts)

    def _board_identity(self):
        """The identity the worker read from the board's vfs (None: the plan has no vfs)."""
        board = self._job.board_identity(cancel=self._cancel) if self._job is not None else None
        if board is not None:
            self.result.board_identity = board.summary()
            self._journal("identity", "probe", board.summary())
        return board

    def _check_product(self, known, board) -> None:
        carried = (board.product if board is not None and board.found else None) or (known.product if known else None)
        if carried and self.settings.product and carried != self.settings.product and not self.settings.repurpose:
            who = (board.thing if board is not None and board.found else None) or (known.thing if known else "?")
            raise FleetdeskError(
                f"this board already carries product {carried!r}'s identity ({who}); "
                f"the station is set for {self.settings.product!r}",
                "confirm a re-purpose to overwrite it; nothing was written")

    def _certificate_active(self, certificate_id: str) -> bool:
        return self._certificate_status(certificate_id) == "ACTIVE"

    def _certificate_status(self, certificate_id: str) -> str | None:
        """ACTIVE, INACTIVE, REVOKED... in this cloud; None when it does not know the certificate."""
        from fleetdesk.errors import CloudError

        try:
            desc = self.cloud.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        except Exception as exc:
            if type(exc).__name__ == "ResourceNotFoundException" or "ResourceNotFound" in str(exc):
                return None  # another fleet's certificate
            raise CloudError(f"could not check the board's certificate {certificate_id[:12]} ({exc})",
                             "check the network and the profile; nothing was written") from exc
        return desc.get("status")

    def _hold_if_deactivated_elsewhere(self, board, status: str | None) -> None:
        """A certificate someone deactivated or revoked in the cloud is a decision, not a glitch:
        stop before writing unless this station itself set it INACTIVE (a run of its own failed)."""
        if status is None or status == "ACTIVE":
            return
        ours = any(a.get("certificate_id") == board.certificate_id and a.get("result") == "FAIL"
                   for a in self.db.attempts(self.result.mac)) if self.result.mac else False
        if ours and status == "INACTIVE":
            return  # rolled back by this station after a failed run: a new identity is expected
        self.result.restore_offered = True  # the tile offers New identity (factory reset)
        raise IdentityMissing(
            f"{board.thing}'s certificate {board.certificate_id[:12]} on this board is {status} in the cloud "
            "(deactivated outside this station)",
            "give it a new identity only if the board should be back in service (New identity / --factory-reset); "
            "nothing was written")

    def _mint_ahead(self, thing: str, mac):
        """Start minting ``thing``'s certificate in the cloud now, on another thread, while the
        worker uploads the stub and reads the board (the mint no longer adds to the board's time).
        Recorded on the run at once, so a crash never leaves it ACTIVE; nothing is stored locally
        until it is used (`_take_ahead`), and an unused one is deleted (`_drop_unused_ahead`)."""
        import threading
        from concurrent.futures import Future

        from fleetdesk.boards.identity import mint_in_cloud

        fut: Future = Future()

        def work() -> None:
            try:
                if _thing_exists(self.cloud, thing):  # a board the fleet knows: it may carry its identity,
                    fut.set_result(None)  # and its thing must not change before the board is read
                    return
                existed = False
                ident = mint_in_cloud(self.cloud, thing, mac=mac or "", product=self.settings.product,
                                      on_certificate=self._record_certificate(thing, created=True))
                self._journal("identity", "minted", {"thing": thing, "ahead": True}, thing=thing,
                              certificate_id=ident.certificate_id, thing_created=0 if existed else 1)
                fut.set_result((thing, ident, existed))
            except BaseException as exc:  # noqa: BLE001 - raised where it is used
                fut.set_exception(exc)

        threading.Thread(target=work, daemon=True, name=f"mint {thing}").start()
        return fut

    def _record_certificate(self, thing: str, created: bool):
        """A callback that puts a certificate on the run the moment the cloud creates it (before
        its attachments): a crash from then on is recovered (the certificate is deactivated)."""
        def record(certificate_id: str) -> None:
            self._journal("identity", "certificate", {"thing": thing, "certificate_id": certificate_id},
                          thing=thing, certificate_id=certificate_id, thing_created=1 if created else 0)
        return record

    def _take_ahead(self, thing: str):
        """The identity minted ahead for ``thing`` (stored now), or None when there is none."""
        from fleetdesk.boards.identity import store_identity_files

        if self._ahead is None:
            return None
        ahead = self._ahead.result(timeout=120)
        if ahead is None or ahead[0] != thing:
            return None
        named, ident, existed = ahead
        self._ahead = None
        minted = store_identity_files(thing, ident.certificate_id, ident.certificate_pem, ident.private_key_pem)
        return minted, existed

    def _drop_unused_ahead(self) -> None:
        """The board kept its identity (or was refused): delete the certificate minted ahead,
        which was never written anywhere, and the thing if it was created for it alone."""
        fut, self._ahead = self._ahead, None
        if fut is None:
            return
        try:
            ahead = fut.result(timeout=120)
        except Exception:  # noqa: BLE001 - the mint failed: nothing to drop
            return
        if ahead is None:
            return
        thing, ident, existed = ahead
        cid = ident.certificate_id
        try:
            self.cloud.deactivate(cid)
            for p in self.cloud.iot.list_thing_principals(thingName=thing).get("principals", []):
                if p.endswith(cid):
                    self.cloud.iot.detach_thing_principal(thingName=thing, principal=p)
            self.cloud.iot.delete_certificate(certificateId=cid, forceDelete=True)
            deleted_thing = not existed and thing != self.result.thing
            if deleted_thing:
                self.cloud.iot.delete_thing(thingName=thing)
            run = self.db.run(self._run_id) if self._run_id else None
            fields: dict[str, Any] = {}
            if run and run.get("certificate_id") == cid:  # recovery must not look for it any more
                fields["certificate_id"] = None
                if deleted_thing:
                    fields["thing_created"] = 0
            self._journal("identity", "unused", {"certificate_id": cid, "deleted": True}, **fields)
        except Exception as exc:  # noqa: BLE001 - left INACTIVE at worst, journaled
            self._journal("identity", "unused", {"certificate_id": cid, "deleted": False, "error": str(exc)})

    def _keep_board_identity(self, board):
        """Write the board's own identity files back with the new firmware (no cloud change);
        the station keeps a copy of its key and PoP (0600) from now on, for a later restore."""
        self._remember(board)
        self.result.thing, self.result.certificate_id = board.thing, board.certificate_id
        self._journal("identity", "done", {"thing": board.thing, "kept": "board",
                                           "certificate_id": board.certificate_id})
        import json

        from fleetdesk.boards.identity import with_station_fields

        files = dict(board.files)
        # another product's board only gets here after a confirmed re-purpose
        config = with_station_fields(json.loads(files["/config.json"]), self.settings.product, self.settings.wifi)
        files["/config.json"] = json.dumps(config, indent=1).encode()
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _remember(self, board) -> None:
        """Key, certificate and PoP of an identity kept from the board, into the key store."""
        import json

        from fleetdesk.boards.identity import der_to_pem, store_identity_files
        from fleetdesk.paths import data_dir

        if (data_dir() / "devices" / board.thing / f"{board.certificate_id[:16]}.private.pem.key").exists():
            return
        pop = json.loads(board.files["/config.json"]).get("pop")
        store_identity_files(board.thing, board.certificate_id, der_to_pem(board.files["/certs/cert.der"], "cert"),
                             der_to_pem(board.files["/certs/key.der"], "key"), pop=pop)

    def _offer_restore(self, known, thing: str, board) -> None:
        """The identity on file is not on the board: stop before writing and offer a restore
        (when there is one to restore; otherwise the caller mints a new identity)."""
        if self._restorable(known, thing) is None:
            self._journal("identity", "note", {"why": "the identity on file is not restorable (certificate not "
                                                      "ACTIVE or key missing): a new one is minted"})
            return
        self.result.restore_offered = True
        raise IdentityMissing(
            f"{thing}'s identity (certificate {known.certificate_id[:12]}) is on file but missing on this board "
            f"({board.reason or 'no identity'})",
            "restore it (Restore identity / --restore-identity), or give the board a new one "
            "(New identity / --factory-reset); nothing was written")

    def _keep_or_mint(self, known, thing: str, mac, board):
        from fleetdesk.boards.identity import device_files, mint_identity, stored_identity

        kept, ahead = None, None
        if board is None and known and known.certificate_id and not self.settings.factory_reset:
            kept = stored_identity(self.cloud, thing, known.certificate_id)  # identity survives a re-flash
        self._backup_replaced(mac, board)  # the identity this write replaces: kept before any mint or write
        if kept is not None:
            self.result.thing, self.result.certificate_id = thing, kept.certificate_id
            self._journal("identity", "done", {"thing": thing, "kept": "key store"})
            minted = kept
        else:
            ahead = self._take_ahead(thing)
            if ahead is not None:
                minted, existed = ahead
            else:
                existed = _thing_exists(self.cloud, thing)
                minted = mint_identity(self.cloud, thing, mac=mac, product=self.settings.product,
                                       on_certificate=self._record_certificate(thing, created=not existed))
            self._minted = minted
            self.result.thing, self.result.certificate_id = thing, minted.certificate_id
            self._journal("identity", "done", {"thing": thing, "created": not existed}, thing=thing,
                          certificate_id=minted.certificate_id, thing_created=0 if existed else 1)
        files = device_files(minted, self.cloud, product=self.settings.product, wifi=self.settings.wifi)
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _backup_replaced(self, mac, board, keep: str | None = None) -> None:
        """Back up what the board carries before this write replaces it: a whole identity (unless
        it is ``keep``, the one being written back), or the files of a damaged one."""
        if board is None:
            return
        if board.found and board.certificate_id != keep:
            self._backup(mac, board, "identity")
        elif not board.found and board.files:
            self._backup(mac, board, "identity-partial")

    def _backup(self, mac, board, label: str = "identity") -> None:
        """Keep the identity the board carries in the production DB (encrypted) before it is
        replaced: the files the probe read from the board with ``read_flash`` (restorable with
        `_restore_files`). Raises when it cannot be kept."""
        import hashlib

        from fleetdesk.boards.vfs import pack_files

        self._journal("backup", "begin", {"thing": board.thing, "certificate_id": board.certificate_id})
        data = pack_files(board.files)
        try:
            self.result.backup_id = self.db.save_backup(mac, label, self.plan.partition("vfs").offset, data)
        except Exception as exc:
            self._journal("backup", "failed", f"{type(exc).__name__}: {exc}")
            raise FleetdeskError(f"the identity backup could not be kept ({exc})",
                                 "fix the production database or its key, then retry; nothing was written") from exc
        # never key material in the journal: names, sizes and a digest only
        self._journal("backup", "done", {"backup_id": self.result.backup_id, "thing": board.thing,
                                         "certificate_id": board.certificate_id, "bytes": len(data),
                                         "bytes_read": board.bytes_read, "sha256": hashlib.sha256(data).hexdigest(),
                                         "identity": board.found, "files": len(board.files)})

    def _restorable(self, known, thing: str):
        """The identity on file as ``(files, source)``: the last backup read from this board when
        its certificate is the one on file and still ACTIVE, else the station's key store; None
        when neither can be written back."""
        import hashlib

        from fleetdesk.boards.identity import device_files, stored_identity
        from fleetdesk.boards.vfs import identity_files, unpack_files

        backup = self.db.latest_backup(known.mac, "identity")
        if backup is not None:
            files = unpack_files(backup[1])
        else:  # backups of older versions: the vfs blocks read back
            backup = self.db.latest_backup(known.mac, "vfs")
            vfs = self.plan.partition("vfs")
            files = identity_files(backup[1], vfs.size if vfs else None) if backup is not None else None
        if files and hashlib.sha256(files["/certs/cert.der"]).hexdigest() == known.certificate_id \
                and self._certificate_active(known.certificate_id):
            return files, "backup"
        ident = stored_identity(self.cloud, thing, known.certificate_id)
        if ident is not None:
            return device_files(ident, self.cloud, product=known.product or self.settings.product,
                                wifi=self.settings.wifi), "key store"
        return None

    def _restore_files(self, known, thing: str):
        """The plan with the identity on file written back (see `_restorable`)."""
        if not (known and known.certificate_id):
            raise FleetdeskError(f"no identity on file for board {self.result.mac}",
                                 "flash it without --restore-identity to give it a new identity")
        found = self._restorable(known, thing)
        if found is None:
            raise FleetdeskError(
                f"the identity on file for {thing} (certificate {known.certificate_id[:12]}) is no longer ACTIVE "
                "or its key is missing", "flash it with --factory-reset to give it a new identity")
        files, source = found
        if source == "backup":  # the identity as it was, with today's product and site Wi-Fi
            import json

            from fleetdesk.boards.identity import with_station_fields

            config = with_station_fields(json.loads(files["/config.json"]), known.product or self.settings.product,
                                         self.settings.wifi)
            files = {**files, "/config.json": json.dumps(config, indent=1).encode()}
        self.result.thing, self.result.certificate_id, self.result.restored = thing, known.certificate_id, True
        self._journal("identity", "done", {"thing": thing, "restored": source})
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _prepare_from_pool(self, thing: str, mac: str):
        """Identity from the offline pool: no cloud call before the write."""
        from fleetdesk.boards.identity import device_files, store_identity_files

        attributes = {"mac": (mac or "").replace(":", "")}
        if self.settings.product:
            attributes["product"] = self.settings.product
        pooled = self.pool.take(mac, thing, attributes)
        self._pooled = pooled.certificate_id
        minted = store_identity_files(thing, pooled.certificate_id, pooled.certificate_pem, pooled.private_key_pem)
        self.result.thing, self.result.certificate_id = thing, pooled.certificate_id
        self._journal("identity", "done", {"thing": thing, "pool": True}, thing=thing,
                      certificate_id=pooled.certificate_id)
        files = device_files(minted, self._device_target, product=self.settings.product, wifi=self.settings.wifi)
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _prepare_from_line_ca(self, thing: str):
        """A new key and a certificate for ``thing`` signed by the line's CA (CN = the thing):
        no cloud call; AWS registers it and creates the thing at the board's first connect."""
        import hashlib

        from fleetdesk.boards.identity import _pem_to_der, device_files, store_identity_files
        from fleetdesk.boards.line_ca import LineCA

        signed = LineCA(self.settings.line_ca_dir).sign_device(thing)
        cid = hashlib.sha256(_pem_to_der(signed.certificate_pem)).hexdigest()  # the id AWS gives it
        minted = store_identity_files(thing, cid, signed.certificate_pem, signed.private_key_pem)
        self.result.thing, self.result.certificate_id = thing, cid
        self._journal("identity", "done", {"thing": thing, "line_ca": True}, thing=thing, certificate_id=cid)
        files = device_files(minted, self._device_target, product=self.settings.product, wifi=self.settings.wifi)
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _sync_pool(self) -> bool:
        """After a pool flash: register this board's thing now if the cloud answers (False:
        unreachable, the registry follows at a later sync), then the backlog of boards flashed
        offline. A refusal (e.g. AccessDenied) FAILs the board: it would never get in."""
        if self.cloud is None:
            return False
        if self._pooled is None:  # the board kept its identity (the DB vouches): nothing to register
            try:
                self.cloud.iot.describe_thing(thingName=self.result.thing)
                return True
            except Exception:  # noqa: BLE001 - unreachable (or not registered): PASS offline
                return False
        self.pool.flashed(self._pooled)  # written and verified: waits for a sync from now on
        try:
            report = self.pool.sync(self.cloud, certificate_id=self._pooled)
        except FleetdeskError as exc:
            self._journal("sync", "failed", exc.message)
            return False
        if report.failed:
            reason = report.failed[0].reason
            self._journal("sync", "refused", reason)
            raise FleetdeskError(f"the cloud refused to register {self.result.thing} ({reason})",
                                 "check the profile's rights (iot:CreateThing, iot:AttachThingPrincipal), then "
                                 "flash the board again: its pooled certificate is retired")
        self._journal("sync", "done")
        try:
            backlog = self.pool.sync(self.cloud)  # boards flashed while offline
            if backlog or backlog.failed:
                self._journal("sync", "backlog", {"synced": list(backlog),
                                                  "refused": {f.thing: f.reason for f in backlog.failed}})
        except FleetdeskError as exc:
            self._journal("sync", "backlog", exc.message)
        return True


def _thing_exists(cloud, thing: str) -> bool:
    """Whether ``thing`` is in the registry (raises when the cloud cannot say)."""
    from fleetdesk.errors import CloudError

    try:
        cloud.iot.describe_thing(thingName=thing)
        return True
    except Exception as exc:
        if type(exc).__name__ == "ResourceNotFoundException" or "ResourceNotFound" in str(exc):
            return False
        raise CloudError(f"could not look up thing {thing} ({exc})",
                         "check the network and the profile; nothing was written") from exc
