"""How to reach a running sandbox: :class:`SandboxInfo` (from ``<state_dir>/endpoint.json``)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetdesk.process import pid_alive

ENDPOINT_FILE = "endpoint.json"
CREDENTIALS_FILE = "credentials.json"


def state_dir_locked(state_dir: Path) -> bool | None:
    """True if a sandbox holds ``<state_dir>/sandbox.lock`` (None where that cannot be told)."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        fh = open(state_dir / "sandbox.lock", "rb")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


@dataclass
class SandboxInfo:
    """A running sandbox's endpoints and credentials.

    Attributes:
        mqtt_host, mqtt_port: devices' MQTT over mTLS.
        ws_port: MQTT over WebSockets.
        http_endpoint: the control plane (``https://127.0.0.1:PORT``) for boto3 ``iot``/``iot-data``.
        ca_file: the sandbox CA (PEM) that signed the server and device certificates.
        region: AWS region name used in ARNs.
        state_dir: the sandbox's state dir.
        pid: the sandbox process.
        aws_access_key_id, aws_secret_access_key: the sandbox's fixed credentials (SigV4).
        internal_port, internal_username, internal_password: the privileged MQTT login on
            loopback for the sandbox's own machinery and benches' device stand-ins (sees
            ``$aws/...``, bypasses the per-connection quotas); the app never uses it (it logs in
            with WebSockets + SigV4 as on AWS); 0/"" when not published.
    """

    mqtt_host: str
    mqtt_port: int
    ws_port: int
    http_endpoint: str
    ca_file: str
    region: str
    state_dir: str = ""
    pid: int = 0
    aws_access_key_id: str = "sandbox"
    aws_secret_access_key: str = "sandbox"
    internal_port: int = 0
    internal_username: str = ""
    internal_password: str = ""

    @classmethod
    def load(cls, state_dir: str | Path | None = None) -> "SandboxInfo | None":
        """The sandbox running for ``state_dir`` (default: the per-user one), or None."""
        from fleetdesk.paths import sandbox_state_dir

        state = Path(state_dir) if state_dir else sandbox_state_dir()
        try:
            data = json.loads((state / ENDPOINT_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not pid_alive(int(data.get("pid", 0))):
            return None
        if state_dir_locked(state) is False:  # a stale endpoint.json whose pid was reused
            return None
        try:
            creds = json.loads((state / CREDENTIALS_FILE).read_text())
        except (OSError, ValueError):
            creds = {}
        fields = set(cls.__dataclass_fields__)
        merged = {**{k: v for k, v in creds.items() if k in fields}, **{k: v for k, v in data.items() if k in fields}}
        merged.setdefault("state_dir", str(state))
        try:
            return cls(**merged)
        except TypeError:
            return None

    def ready_json(self) -> dict:
        """The public part printed by ``sandbox up --json`` (no secrets)."""
        return {k: getattr(self, k) for k in ("mqtt_host", "mqtt_port", "ws_port", "http_endpoint", "ca_file", "region")}

    def to_json(self) -> dict:
        d = asdict(self)
        for secret in ("aws_secret_access_key", "aws_access_key_id", "internal_username", "internal_password"):
            d.pop(secret)
        return d

    def boto3_kwargs(self) -> dict:
        """Keyword arguments for ``boto3.client("iot" | "iot-data" | "dynamodb", **kw)`` against this sandbox."""
        return {"endpoint_url": self.http_endpoint, "region_name": self.region,
                "aws_access_key_id": self.aws_access_key_id, "aws_secret_access_key": self.aws_secret_access_key,
                "verify": self.ca_file}

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 and the aws CLI at this sandbox."""
        return {
            "AWS_ENDPOINT_URL_IOT": self.http_endpoint,
            "AWS_ENDPOINT_URL_IOT_DATA": self.http_endpoint,
            # botocore derives the variable from the service id "IoT Data Plane"
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": self.http_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": self.http_endpoint,  # the sandbox's DynamoDB (telemetry history)
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CA_BUNDLE": self.ca_file,
            "FLEETDESK_CA_FILE": self.ca_file,
            "FLEETDESK_MQTT_ENDPOINT": f"{self.mqtt_host}:{self.mqtt_port}",
        }
