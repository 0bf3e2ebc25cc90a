"""The test broker survives a port that another process took between picking and binding it."""

from __future__ import annotations

import socket

from .broker import Broker


def test_broker_moves_to_a_free_port_when_its_port_was_taken(tmp_path):
    broker = Broker(tmp_path)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", broker.port))
    squatter.listen()
    taken = broker.port
    try:
        broker.start()
        assert broker.port != taken
        assert f"listener {broker.port} " in broker.conf.read_text()
        with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
            pass
    finally:
        broker.stop()
        squatter.close()
