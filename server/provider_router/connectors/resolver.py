"""A provider host's addresses, looked up once per few minutes instead of per connection.

Every new connection to a host name would otherwise ask the resolver (a thread-pool call,
milliseconds against a network DNS server): a burst of thousands of new streams would queue
thousands of lookups. aiohttp, used before, cached them for 300 s too. Concurrent lookups of
one host share a single query.
"""

from __future__ import annotations

import asyncio
import socket
import time

Address = tuple[int, str, int]
"""Address family, IP address and port, ready for a connect."""

DNS_TTL_S = 300.0


class Resolver:
    """One host's addresses, cached for `ttl_s`; lookups in flight are shared."""

    def __init__(self, host: str, port: int, ttl_s: float = DNS_TTL_S) -> None:
        self._host = host
        self._port = port
        self._ttl_s = ttl_s
        self._addresses: list[Address] = []
        self._expires = 0.0
        self._lookup: asyncio.Future[list[Address]] | None = None

    async def addresses(self) -> list[Address]:
        """The host's addresses in the resolver's order (OSError when it has none)."""
        if self._addresses and time.monotonic() < self._expires:
            return self._addresses
        lookup = self._lookup
        if lookup is None:
            lookup = self._lookup = asyncio.ensure_future(self._resolve())
            lookup.add_done_callback(self._finished)
        # shield: one caller giving up (its deadline) must not cancel the others' lookup.
        return await asyncio.shield(lookup)

    def forget(self) -> None:
        """Drop the cached addresses (none of them answered): the next connect looks again."""
        self._addresses = []

    def _finished(self, lookup: asyncio.Future[list[Address]]) -> None:
        self._lookup = None
        if not lookup.cancelled() and lookup.exception() is None:
            self._addresses = lookup.result()
            self._expires = time.monotonic() + self._ttl_s

    async def _resolve(self) -> list[Address]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        found: list[Address] = []
        for family, _, _, _, sockaddr in infos:
            address = (int(family), str(sockaddr[0]), int(sockaddr[1]))
            if address not in found:
                found.append(address)
        if not found:
            raise OSError(f"no address for {self._host}")
        return found
