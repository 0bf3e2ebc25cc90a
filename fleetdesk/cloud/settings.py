"""How to reach an MQTT endpoint: host, port, client id and credentials.

:class:`ConnectionSettings` covers the three ways Fleetdesk connects:

* mTLS from files (devices, the sandbox app client cert, real AWS with a cert),
* username/password over TLS (the sandbox's privileged internal clients),
* WebSockets signed with SigV4 from an awscrt credentials provider (the app on real AWS).

:meth:`ConnectionSettings.check` validates the files up front: awscrt only reports a
missing CA file after ~27 s of retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetdesk.errors import ConfigError


@dataclass
class ConnectionSettings:
    """Where and how an MQTT5 client connects.

    Attributes:
        host: broker host name (the iot:Data-ATS endpoint on AWS).
        port: TCP port (8883 mTLS, 443 WebSockets or ALPN on AWS).
        client_id: MQTT client id; devices must use their thing name.
        ca_file: PEM CA bundle to trust; None = the system trust store (real AWS).
        cert_file: PEM client certificate (mTLS).
        key_file: PEM private key matching ``cert_file``.
        username: MQTT username (password auth; the sandbox's internal clients).
        password: MQTT password.
        websockets: connect over WebSockets with a SigV4-signed handshake.
        region: AWS region used for SigV4 signing.
        credentials_provider: an ``awscrt.auth.AwsCredentialsProvider`` (WebSockets only).
        clean_start: False keeps a persistent session (QoS1 messages queued while offline).
        session_expiry_sec: how long the broker keeps the session after a disconnect.
        keep_alive_sec: MQTT keep-alive.
        receive_maximum: QoS1 messages the broker may have in flight towards us.
        min_reconnect_ms: first reconnect delay (exponential backoff with jitter after that).
        max_reconnect_ms: reconnect delay cap.
        initial_attempts: failed attempts before the first success that end in ``failed``.
        tls: False only for a privileged login on a loopback listener (the sandbox's
            internal port); refused for any other host.
        extra: free-form options (kept for forward compatibility).
    """

    host: str
    port: int
    client_id: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    websockets: bool = False
    region: str = "us-east-1"
    credentials_provider: Any = None
    clean_start: bool = False
    session_expiry_sec: int = 3600
    keep_alive_sec: int = 30
    receive_maximum: int = 1000  # awscrt's inbound QoS1 cost grows with this window (measured: 5000 -> 4x CPU)
    min_reconnect_ms: int = 250
    max_reconnect_ms: int = 10_000
    initial_attempts: int = 3
    tls: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def auth(self) -> str:
        """"websockets", "mtls" or "password"."""
        if self.websockets:
            return "websockets"
        if self.cert_file:
            return "mtls"
        return "password"

    def check(self) -> None:
        """Validate the settings and that every file exists and is readable.

        Raises:
            ConfigError: naming the first problem found and what to do.
        """
        if not self.host:
            raise ConfigError("the MQTT endpoint host is empty", "set the endpoint in the profile")
        if not (0 < int(self.port) < 65536):
            raise ConfigError(f"MQTT port {self.port} is out of range", "use 8883 (mTLS) or 443")
        if not self.client_id:
            raise ConfigError("the MQTT client id is empty", "devices use their thing name as client id")
        if not self.tls and self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"refusing MQTT without TLS to {self.host}", "plain MQTT is only for loopback")
        if self.websockets:
            if self.credentials_provider is None:
                raise ConfigError(
                    "WebSockets needs AWS credentials",
                    "configure credentials in the profile (default chain, named profile or keyring)",
                )
        elif self.cert_file or self.key_file:
            if not (self.cert_file and self.key_file):
                raise ConfigError("mTLS needs both a certificate and a private key file")
        elif not self.username:
            raise ConfigError(
                "no MQTT credentials: give a certificate + key, a username/password, or use WebSockets",
            )
        for label, path in (("CA", self.ca_file), ("certificate", self.cert_file), ("private key", self.key_file)):
            if path is None:
                continue
            p = Path(path)
            if not p.is_file():
                raise ConfigError(
                    f"the {label} file {p} does not exist",
                    "check the profile, or start the sandbox (`fleetdesk sandbox up`) if it is the sandbox CA",
                )
            if not os.access(p, os.R_OK):
                raise ConfigError(f"the {label} file {p} is not readable", f"fix its permissions (chmod/chown {p})")
            head = p.read_bytes()[:4096]
            if b"-----BEGIN" not in head:
                raise ConfigError(f"the {label} file {p} is not PEM", "give a PEM file (-----BEGIN ...)")
