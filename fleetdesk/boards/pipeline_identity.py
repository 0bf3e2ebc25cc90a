"""The identity steps of a station pipeline: which identity a board gets, and from where.

`IdentitySteps` is mixed into `fleetdesk.boards.station.BoardPipeline`; its `_prepare` runs
once the worker is connected to the board (same connection) and returns the plan to write:
the bundle with the device's /config.json and /certs/* in its vfs image. Sources, in order:
the offline certificate pool, the identity on file written back (restore), the board's own
identity kept across a re-flash, or a newly minted one (with a backup of the old one first).
"""

from __future__ import annotations

from fleetdesk.errors import FleetdeskError


class IdentitySteps:
    """Identity preparation for `BoardPipeline` (uses its settings, db, cloud, pool, result,
    ``_journal``, ``_event``, ``_cancel`` and ``_job``)."""

    def _prepare(self, info: dict):
        from fleetdesk.boards.identity import device_files, mint_identity, stored_identity, thing_name_for

        mac = info.get("mac")
        self.result.chip, self.result.mac = info.get("chip"), mac
        self._journal("detect", "done", {k: info.get(k) for k in ("chip", "mac", "revision", "flash_size")}, mac=mac)
        self.plan.check_chip(info.get("chip"))
        self.plan.check_fits(info.get("flash_bytes"))
        if not self.settings.identity:
            return self.plan
        if self._cancel.is_set():
            raise FleetdeskError("cancelled by the operator")
        self._event(stage="identity")
        self._journal("identity", "begin")
        known = self.db.device(mac) if mac else None
        if (known and known.product and self.settings.product and known.product != self.settings.product
                and not self.settings.repurpose):
            raise FleetdeskError(
                f"this board already carries product {known.product!r}'s identity ({known.thing}); "
                f"the station is set for {self.settings.product!r}",
                "confirm a re-purpose to overwrite it; nothing was written")
        thing = (known.thing if known and known.thing else
                 thing_name_for(self.settings.name_template, mac or "", info.get("chip") or ""))
        if self.settings.claim:  # no cloud call at flash time: the board claims its identity at first boot
            from fleetdesk.boards.claim import prepare_claim

            return prepare_claim(self, info, thing)
        if self.pool is not None:
            return self._prepare_from_pool(thing, mac)
        kept = None
        self.result.identity_on_file = bool(known and known.certificate_id)
        if self.settings.restore_identity:
            restored = self._restore_files(known, thing)
            if restored is not None:
                return restored
        if known and known.certificate_id and not self.settings.factory_reset:
            kept = stored_identity(self.cloud, thing, known.certificate_id)  # identity survives a re-flash
        if kept is not None:
            self.result.thing, self.result.certificate_id = thing, kept.certificate_id
            self._journal("identity", "done", {"thing": thing, "kept": True})
            minted = kept
        else:
            existed = _thing_exists(self.cloud, thing)
            minted = mint_identity(self.cloud, thing, mac=mac, product=self.settings.product)
            self._minted = minted
            self.result.thing, self.result.certificate_id = thing, minted.certificate_id
            self._journal("identity", "done", {"thing": thing, "created": not existed}, thing=thing,
                          certificate_id=minted.certificate_id, thing_created=0 if existed else 1)
        files = device_files(minted, self.cloud, product=self.settings.product, wifi=self.settings.wifi)
        plan = self.plan.with_vfs_files(files)
        if kept is None and known and known.certificate_id:  # the board's identity is replaced: back it up
            self._backup_before_write(known, plan)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _backup_before_write(self, known, plan) -> None:
        """Have the worker read the vfs partition back before its write (bounded to the blocks
        ``plan``'s vfs image uses, the rest only if the identity lies beyond them)."""
        vfs = plan.partition("vfs")
        if vfs is None or self._job is None:
            return
        self._backup_of = (known.mac, known.thing, known.certificate_id)
        self._job.read_before_write = [{"label": "vfs-backup", "offset": vfs.offset, "size": vfs.size,
                                        "first": _used_extent(plan, vfs), "check": "littlefs-identity"}]
        self._journal("backup", "begin", {"thing": known.thing, "certificate_id": known.certificate_id})

    def _save_backup(self, ev: dict) -> None:
        import hashlib
        from pathlib import Path

        from fleetdesk.boards.vfs import identity_files

        mac, thing, cert = self._backup_of
        data = Path(ev["path"]).read_bytes()
        files = identity_files(data, int(ev.get("size") or len(data)))
        self.result.backup_id = self.db.save_backup(mac, "vfs", int(ev.get("offset") or 0), data)
        # never key material in the journal: names, sizes and a digest only
        self._journal("backup", "done", {"backup_id": self.result.backup_id, "thing": thing, "certificate_id": cert,
                                         "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                         "identity": files is not None})

    def _restore_files(self, known, thing: str):
        """The plan with the identity on file written back: the last backup read from this board
        when it holds the device's current (ACTIVE) certificate, else the station's key store."""
        from fleetdesk.boards.identity import _pem_to_der, device_files, stored_identity
        from fleetdesk.boards.vfs import identity_files

        if not (known and known.certificate_id):
            raise FleetdeskError(f"no identity on file for board {self.result.mac}",
                                 "flash it without --restore-identity to give it a new identity")
        ident = stored_identity(self.cloud, thing, known.certificate_id)
        if ident is None:
            raise FleetdeskError(
                f"the identity on file for {thing} (certificate {known.certificate_id[:12]}) is no longer ACTIVE "
                "or its key is missing", "flash it with --factory-reset to give it a new identity")
        files = None
        backup = self.db.latest_backup(known.mac, "vfs")
        if backup is not None:
            vfs = self.plan.partition("vfs")
            files = identity_files(backup[1], vfs.size if vfs else None)
            if files and files["/certs/cert.der"] != _pem_to_der(ident.certificate_pem):
                files = None  # a backup of an identity the board no longer uses
        source = "backup" if files else "key store"
        if files is None:
            files = device_files(ident, self.cloud, product=known.product or self.settings.product,
                                 wifi=self.settings.wifi)
        self.result.thing, self.result.certificate_id, self.result.restored = thing, ident.certificate_id, True
        self._journal("identity", "done", {"thing": thing, "restored": source})
        plan = self.plan.with_vfs_files(files)
        self._journal("write", "begin", {"bundle_sha256": self.plan.sha256, "bytes": plan.total_bytes})
        return plan

    def _prepare_from_pool(self, thing: str, mac: str):
        """Identity from the offline pool: no cloud call before the write."""
        from fleetdesk.boards.identity import MintedIdentity, device_files, store_identity_files

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

    def _sync_pool(self) -> bool:
        """After a pool flash: register the thing now if the cloud answers (else: pending)."""
        if self.cloud is None:
            return False
        try:
            self.pool.sync(self.cloud)
        except FleetdeskError as exc:
            self._journal("sync", "failed", exc.message)
            return False
        self._journal("sync", "done")
        return True


def _used_extent(plan, vfs) -> int:
    """Bytes from the vfs start up to the last block this bundle's image uses (+64 KB margin)."""
    image = next((p.data for p in plan.parts if p.offset == vfs.offset), b"")
    end = 0
    for i in range(0, len(image), 4096):
        if image[i:i + 4096].count(0xFF) != len(image[i:i + 4096]):
            end = i + 4096
    return min(vfs.size, end + 0x10000)


def _thing_exists(cloud, thing: str) -> bool:
    try:
        cloud.iot.describe_thing(thingName=thing)
        return True
    except Exception:
        return False
