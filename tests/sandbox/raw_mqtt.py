"""A raw MQTT 3.1.1/5 client over TLS (verified against the sandbox CA) for tests that must see
the exact packets the sandbox sends (awsiotsdk validates and paces on the client side, so it
cannot send what these tests send: 9 filters in one SUBSCRIBE, 150 publishes at once)."""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
from pathlib import Path

from fleetdesk.sandbox.mqtt_quotas import properties
from fleetdesk.sandbox.mqtt_wire import decode_varint, mqtt_string, packet


class _WsSocket:
    """The part of a socket RawMqtt uses, over MQTT-over-WebSockets (binary frames).

    websockets' asyncio client on a private event-loop thread, not its sync client: the sync client
    reads the TLS socket in a background thread while the caller's thread writes, which Python's SSL
    sockets do not support (with TLS 1.3 session tickets about 1 upgrade in 100 was lost). Here only
    the loop thread touches the TLS object."""

    def __init__(self, url: str, ctx: ssl.SSLContext, open_timeout: float) -> None:
        import asyncio
        import threading

        from websockets.asyncio.client import connect

        self.timeout: float | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="raw-mqtt-wss", daemon=True)
        self.thread.start()

        async def open_ws():
            return await connect(url, ssl=ctx, subprotocols=["mqtt"], open_timeout=open_timeout,
                                 compression=None, max_size=None)

        try:
            self.ws = self._run(open_ws(), None)
        except BaseException:
            self._end_loop()
            raise

    def _run(self, coro, timeout: float | None):
        import asyncio
        import concurrent.futures

        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError("timed out reading from the WSS connection") from None

    def sendall(self, data: bytes) -> None:
        self._run(self.ws.send(data), self.timeout)

    def recv(self, _n: int) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            frame = self._run(self.ws.recv(), self.timeout)
        except ConnectionClosed:
            return b""
        return frame if isinstance(frame, bytes) else frame.encode()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def close(self) -> None:
        try:
            self._run(self.ws.close(), 10)
        finally:
            self._end_loop()


class RawMqtt:
    """One TLS connection; ``connect`` sends a CONNECT, ``read`` returns whole packets.

    ``RawMqtt(info, cert, key)`` is a device on the mTLS port; :meth:`over_wss` the sandbox's
    MQTT-over-WebSockets port with a SigV4-presigned URL (how the app connects)."""

    @classmethod
    def over_wss(cls, info, secret: str | None = None, timeout: float = 10.0) -> "RawMqtt":
        """A connection to the WSS port signed with the sandbox's credentials (or ``secret``)."""
        from fleetdesk.sandbox.presign import presign

        url = presign(f"https://localhost:{info.ws_port}/mqtt", info.aws_access_key_id,
                      secret or info.aws_secret_access_key, service="iotdevicegateway", region=info.region)
        sock = _WsSocket("wss" + url[len("https"):], ssl.create_default_context(cafile=info.ca_file), timeout)
        self = cls.__new__(cls)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.level, self._buf, self._pid = 4, b"", 0
        return self

    def __init__(self, info, cert_pem: str, key_pem: str, timeout: float = 10.0) -> None:
        ctx = ssl.create_default_context(cafile=info.ca_file)
        with tempfile.TemporaryDirectory() as d:
            cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
            cert.write_text(cert_pem)
            key.write_text(key_pem)
            key.chmod(0o600)
            ctx.load_cert_chain(str(cert), str(key))
        self.sock = ctx.wrap_socket(socket.create_connection((info.mqtt_host, info.mqtt_port), timeout=timeout),
                                    server_hostname="localhost")
        self.level = 4
        self._buf = b""
        self._pid = 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def connect(self, client_id: str, level: int = 5, keep_alive: int = 60, props: bytes = b"",
                clean: bool = True) -> tuple[int, dict]:
        """Send CONNECT (clean start unless ``clean`` is False); returns (reason code, {property id:
        raw value}) of the CONNACK (``self.session_present``: its Session Present flag).

        Raises:
            ConnectionError: the server closed the connection without a CONNACK.
        """
        self.level = level
        body = mqtt_string("MQTT") + bytes([level, 0x02 if clean else 0x00]) + struct.pack(">H", keep_alive)
        if level == 5:
            body += bytes([len(props)]) + props
        self.sock.sendall(packet(0x10, body + mqtt_string(client_id)))
        first, body = self.read()
        assert first >> 4 == 2, f"expected CONNACK, got packet type {first >> 4}"
        self.session_present = bool(body[0] & 0x01)
        found = {}
        if level == 5 and len(body) > 2:
            plist, _ = properties(body, 2)
            found = {pid: body[a:b] for pid, a, b in plist}
        return body[1], found

    def read(self) -> tuple[int, bytes]:
        """The next packet (first byte, body).

        Raises:
            ConnectionError: the server closed the connection.
        """
        while True:
            if len(self._buf) >= 2:
                got = decode_varint(self._buf, 1)
                if got is not None and len(self._buf) >= got[1] + got[0]:
                    length, start = got
                    first, body = self._buf[0], self._buf[start:start + length]
                    self._buf = self._buf[start + length:]
                    return first, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buf += chunk

    def next_id(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    def publish_packet(self, topic: str, payload: bytes, qos: int = 1) -> bytes:
        head = mqtt_string(topic) + (struct.pack(">H", self.next_id()) if qos else b"")
        return packet(0x30 | (qos << 1), head + (b"\x00" if self.level == 5 else b"") + payload)

    def subscribe(self, filters: list[str], props: bytes = b"") -> list[int]:
        """SUBSCRIBE (QoS 1 each); the SUBACK's reason codes."""
        pid = self.next_id()
        body = struct.pack(">H", pid) + (bytes([len(props)]) + props if self.level == 5 else b"")
        body += b"".join(mqtt_string(f) + b"\x01" for f in filters)
        self.sock.sendall(packet(0x82, body))
        while True:
            first, ack = self.read()
            if first >> 4 == 9 and struct.unpack_from(">H", ack, 0)[0] == pid:
                pos = 2 + (1 + ack[2] if self.level == 5 else 0)
                return list(ack[pos:])

    def unsubscribe(self, filters: list[str]) -> None:
        pid = self.next_id()
        body = struct.pack(">H", pid) + (b"\x00" if self.level == 5 else b"") + b"".join(map(mqtt_string, filters))
        self.sock.sendall(packet(0xA2, body))
        while True:
            first, ack = self.read()
            if first >> 4 == 11:
                return

    def ping(self) -> None:
        """PINGREQ, then wait for PINGRESP (other packets are skipped)."""
        self.sock.sendall(b"\xc0\x00")
        while self.read()[0] != 0xD0:
            pass
