"""Builds the awscrt MQTT5 client for :class:`fleetdesk.cloud.connection.Connection`.

mTLS and WebSockets+SigV4 go through awsiotsdk's ``mqtt5_client_builder`` (ALPN on 443,
SigV4 handshake); username/password clients are built directly. SDK metrics are off: they
would be appended to the MQTT username.
"""

from __future__ import annotations

from typing import Any

from fleetdesk.cloud.settings import ConnectionSettings


def build_client(s: ConnectionSettings, conn: Any) -> Any:
    """An awscrt MQTT5 client for ``s`` whose callbacks go to ``conn``'s ``_on_*`` methods."""
    from awscrt import io, mqtt5
    from awsiot import mqtt5_client_builder

    common = dict(
        endpoint=s.host,
        port=s.port,
        client_id=s.client_id,
        session_behavior=(
            mqtt5.ClientSessionBehaviorType.CLEAN if s.clean_start
            else mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS
        ),
        session_expiry_interval_sec=0 if s.clean_start else s.session_expiry_sec,
        keep_alive_interval_sec=s.keep_alive_sec,
        receive_maximum=s.receive_maximum,
        retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
        min_reconnect_delay_ms=s.min_reconnect_ms,
        max_reconnect_delay_ms=s.max_reconnect_ms,
        connack_timeout_ms=10_000,
        ack_timeout_sec=30,
        enable_metrics_collection=False,
    )
    callbacks = {  # awsiotsdk's builder keywords
        "on_publish_received": conn._on_publish,
        "on_lifecycle_attempting_connect": conn._on_attempt,
        "on_lifecycle_connection_success": conn._on_success,
        "on_lifecycle_connection_failure": conn._on_failure,
        "on_lifecycle_disconnection": conn._on_disconnect,
        "on_lifecycle_stopped": conn._on_stopped,
    }
    common.update(callbacks)
    if s.ca_file:
        common["ca_filepath"] = s.ca_file
    if s.websockets:
        return mqtt5_client_builder.websockets_with_default_aws_signing(
            region=s.region, credentials_provider=s.credentials_provider, **common)
    if s.cert_file:
        return mqtt5_client_builder.mtls_from_path(
            cert_filepath=s.cert_file, pri_key_filepath=s.key_file, username=s.username, **common)
    # username/password over TLS (server verified against ca_file or the system store)
    tls_ctx = None
    if s.tls:
        tls_opts = io.TlsContextOptions()
        if s.ca_file:
            tls_opts.override_default_trust_store_from_path(None, s.ca_file)
        tls_ctx = io.ClientTlsContext(tls_opts)
    connect = mqtt5.ConnectPacket(
        client_id=s.client_id, username=s.username, password=(s.password or "").encode(),
        keep_alive_interval_sec=s.keep_alive_sec, receive_maximum=s.receive_maximum,
        session_expiry_interval_sec=common["session_expiry_interval_sec"],
    )
    opts = mqtt5.ClientOptions(
        host_name=s.host, port=s.port, tls_ctx=tls_ctx, connect_options=connect,
        session_behavior=common["session_behavior"], retry_jitter_mode=common["retry_jitter_mode"],
        min_reconnect_delay_ms=s.min_reconnect_ms, max_reconnect_delay_ms=s.max_reconnect_ms,
        connack_timeout_ms=10_000, ack_timeout_sec=30,
        **{_option_name(keyword): fn for keyword, fn in callbacks.items()},
        disable_metrics=True,  # metrics would be appended to the username
    )
    return mqtt5.Client(opts)


def _option_name(keyword: str) -> str:
    """The awscrt ``ClientOptions`` field for an awsiotsdk builder callback keyword (the builder's own mapping)."""
    if keyword == "on_publish_received":
        return "on_publish_callback_fn"
    return keyword.replace("on_lifecycle_", "on_lifecycle_event_") + "_fn"
