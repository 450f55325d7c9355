"""The redis-server harness itself: it starts, answers, dies when killed, and restarts."""

from __future__ import annotations

import socket

import pytest

from tests.redis.server import RedisServer


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_it_starts_answers_dies_and_restarts(own_redis_server: RedisServer) -> None:
    assert _ping(own_redis_server.port) == b"+PONG\r\n"
    own_redis_server.kill()
    with pytest.raises(OSError):
        _ping(own_redis_server.port)
    own_redis_server.restart()
    assert _ping(own_redis_server.port) == b"+PONG\r\n"
