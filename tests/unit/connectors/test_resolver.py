"""Provider host lookups: cached, shared while in flight, and tried address by address."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from provider_router.connectors.h1_pool import ConnectionPool, split_url
from provider_router.connectors.resolver import Resolver


class CountingLookups:
    """The loop's own getaddrinfo, counted (and slowed, so lookups overlap)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = loop.getaddrinfo

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            await asyncio.sleep(0.05)
            return await real(*args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", counted)


async def listener() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_concurrent_connects_share_one_lookup_and_later_ones_reuse_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = CountingLookups(asyncio.get_running_loop(), monkeypatch)
    server, port = await listener()
    pool = ConnectionPool(split_url(f"http://localhost:{port}/").origin, None, max_idle=4,
                          keepalive_s=30)
    connections = await asyncio.gather(*(pool.connect() for _ in range(20)))
    connections.append(await pool.connect())
    assert lookups.calls == 1 and len(connections) == 21
    for connection in connections:
        connection.close()
    server.close()


async def test_lookups_expire_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = CountingLookups(asyncio.get_running_loop(), monkeypatch)
    resolver = Resolver("localhost", 80, ttl_s=0.1)
    first = await resolver.addresses()
    assert await resolver.addresses() == first and lookups.calls == 1
    await asyncio.sleep(0.15)
    await resolver.addresses()
    assert lookups.calls == 2


async def test_unknown_host_is_an_os_error() -> None:
    with pytest.raises(OSError):
        await Resolver("no-such-host.invalid", 80).addresses()


async def test_an_address_that_refuses_falls_through_to_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, port = await listener()
    refused = free_port()
    lookups = CountingLookups(asyncio.get_running_loop(), monkeypatch)
    pool = ConnectionPool(split_url(f"http://localhost:{port}/").origin, None, max_idle=4,
                          keepalive_s=30)
    # What a dual-stack name gives: a first address nothing listens on, then the server.
    resolver = pool._resolver
    resolver._addresses = [(socket.AF_INET, "127.0.0.1", refused),
                           (socket.AF_INET, "127.0.0.1", port)]
    resolver._expires = float("inf")
    connection = await pool.connect()
    connection.close()
    assert lookups.calls == 0
    # When none answers, the addresses are forgotten and the next connect looks again.
    resolver._addresses = [(socket.AF_INET, "127.0.0.1", refused)]
    with pytest.raises(OSError):
        await pool.connect()
    server.close()
    with pytest.raises(OSError):
        await pool.connect()
    assert lookups.calls == 1
