"""Cloud profiles: the local sandbox, or a real AWS IoT account.

Profiles are stored as JSON in the per-user config dir. Secrets (an AWS secret access key
typed into Settings) go to the OS keyring, never into that file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleetdesk.errors import ConfigError
from fleetdesk.paths import config_dir

KEYRING_SERVICE = "fleetdesk"
CREDENTIAL_SOURCES = ("default-chain", "aws-profile", "keyring")


@dataclass
class Profile:
    """One place the app talks to.

    Attributes:
        name: unique label shown in the status bar.
        kind: "sandbox" (local emulator) or "aws".
        state_dir: sandbox only; None = the per-user default.
        endpoint: aws only; the iot:Data-ATS host (xxxx-ats.iot.REGION.amazonaws.com).
        region: AWS region.
        credentials: "default-chain" (env, ~/.aws, SSO), "aws-profile" (named profile) or
            "keyring" (access key id here, secret in the OS keyring).
        aws_profile: the named profile for "aws-profile".
        access_key_id: for "keyring".
        bluetooth: which Bluetooth BLE Setup uses: "virtual" (virtual boards), "system"
            (this computer's radio) or "" = the default (virtual boards for a sandbox
            profile, the radio for AWS); see :attr:`ble_backend`.
    """

    name: str = "sandbox"
    kind: str = "sandbox"
    state_dir: str | None = None
    endpoint: str = ""
    region: str = "us-east-1"
    credentials: str = "default-chain"
    aws_profile: str = ""
    access_key_id: str = ""
    bluetooth: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.kind not in ("sandbox", "aws"):
            raise ConfigError(f"profile {self.name!r}: kind must be 'sandbox' or 'aws', not {self.kind!r}")
        if self.bluetooth not in ("", "virtual", "system"):
            raise ConfigError(f"profile {self.name!r}: bluetooth must be 'virtual' or 'system', not {self.bluetooth!r}",
                              "choose Bluetooth in Settings: virtual boards or this computer's radio")
        if self.kind == "aws":
            if not self.endpoint:
                raise ConfigError(
                    f"profile {self.name!r}: the AWS IoT endpoint is empty",
                    "run `aws iot describe-endpoint --endpoint-type iot:Data-ATS` and paste the address",
                )
            if self.credentials not in CREDENTIAL_SOURCES:
                raise ConfigError(f"profile {self.name!r}: unknown credentials source {self.credentials!r}")
            if self.credentials == "aws-profile" and not self.aws_profile:
                raise ConfigError(f"profile {self.name!r}: name the AWS profile to use")
            if self.credentials == "keyring" and not self.access_key_id:
                raise ConfigError(f"profile {self.name!r}: the access key id is empty")

    @property
    def ble_backend(self) -> str:
        """The Bluetooth backend this profile uses: "virtual" or "system"."""
        if self.bluetooth:
            return self.bluetooth
        return "virtual" if self.kind == "sandbox" else "system"

    def secret_key(self) -> str | None:
        """The secret access key from the OS keyring ("keyring" credentials only)."""
        import keyring

        return keyring.get_password(KEYRING_SERVICE, f"{self.name}:{self.access_key_id}")

    def set_secret_key(self, secret: str) -> None:
        import keyring

        keyring.set_password(KEYRING_SERVICE, f"{self.name}:{self.access_key_id}", secret)


@dataclass
class Profiles:
    """All profiles plus which one is active."""

    active: str = "sandbox"
    items: dict[str, Profile] = field(default_factory=lambda: {"sandbox": Profile()})

    @property
    def current(self) -> Profile:
        return self.items.get(self.active) or Profile()

    @staticmethod
    def path() -> Path:
        return config_dir() / "profiles.json"

    @classmethod
    def load(cls, path: Path | None = None) -> "Profiles":
        path = path or cls.path()
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            items = {name: Profile(**{**p, "name": name}) for name, p in raw.get("profiles", {}).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{path} is not a valid profiles file ({exc})",
                "fix it by hand or move it away; Fleetdesk will start with the sandbox profile",
            ) from exc
        items.setdefault("sandbox", Profile())
        return cls(active=raw.get("active", "sandbox"), items=items)

    def save(self, path: Path | None = None) -> None:
        path = path or self.path()
        for p in self.items.values():
            p.validate()
        data = {"active": self.active, "profiles": {n: _public(p) for n, p in self.items.items()}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)


def _public(p: Profile) -> dict:
    d = asdict(p)
    d.pop("name")
    return d
