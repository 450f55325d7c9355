"""Fixtures shared by every suite: a real redis-server per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis.server import RedisServer


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (flushed per test by `redis_server`)."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """A running, empty redis-server; restarted first if an earlier test killed it."""
    if redis_server_session.process is None:
        redis_server_session.start()
    redis_server_session.flush()
    yield redis_server_session


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (for tests that kill and restart it)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()
