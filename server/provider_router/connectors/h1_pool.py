"""Keep-alive HTTP/1.1 connections to one origin, and the request head that goes on them.

The pool does not cap connections in use: the router already bounds every provider's
concurrency (`max_concurrent`, rate limits), and a second, hidden cap here would only queue
calls silently behind it. What it bounds is what it keeps: at most `max_idle` idle
connections, none idle for longer than `keepalive_s`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from provider_router.connectors.egress import EgressPolicy
from provider_router.connectors.h1 import H1Connection
from provider_router.connectors.proxy import Proxy, ProxyConnector
from provider_router.connectors.resolver import Resolver

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a request target may carry as they are (RFC 3986 reserved + unreserved + '%').
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


class Origin(NamedTuple):
    """Where connections go: scheme, host and port."""

    scheme: str
    host: str
    port: int


class Target(NamedTuple):
    """A URL split once into its origin, the request line's target and the Host header;
    `host_lines` is the Host line as sent, followed (through a proxy) by the proxy's own
    header lines, so a request head costs the same with or without one."""

    origin: Origin
    path: str
    host_header: str
    host_lines: str


def split_url(url: str) -> Target:
    """The origin, request target and Host header of an http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in a URL are not sent; use a header")
    host = parts.hostname
    port = parts.port or _DEFAULT_PORTS[scheme]
    ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path = f"{path}?{quote(parts.query, safe=_TARGET_SAFE)}"
    return Target(Origin(scheme, ascii_host, port), path, host_header,
                  f"Host: {host_header}\r\n")


def request_head(method: str, target: Target, headers: Mapping[str, str],
                 body_length: int | None) -> bytes:
    """The request line and headers; names the caller set win over our defaults."""
    lines = [f"{method} {target.path} HTTP/1.1\r\n{target.host_lines}"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    lowered = {name.lower() for name in headers}
    if "accept" not in lowered:
        lines.append("Accept: */*\r\n")
    if "accept-encoding" not in lowered:
        lines.append("Accept-Encoding: gzip, deflate\r\n")
    if "user-agent" not in lowered:
        lines.append("User-Agent: provider-router\r\n")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class ConnectionPool:
    """Idle keep-alive connections to one origin, lent out one request at a time."""

    def __init__(self, origin: Origin, tls: ssl.SSLContext | None, *, max_idle: int,
                 keepalive_s: float, egress: EgressPolicy | None = None,
                 proxy: Proxy | None = None) -> None:
        self.origin = origin
        self._proxy = ProxyConnector(proxy, origin, tls) if proxy is not None else None
        # Checked on every new connection, against the addresses actually dialled.
        self._egress = egress
        self._tls = tls
        self._max_idle = max_idle
        self._keepalive_s = keepalive_s
        self._idle: deque[H1Connection] = deque()
        self._resolver = Resolver(origin.host, origin.port)
        self._closed = False

    def idle_connection(self) -> H1Connection | None:
        """The most recently used idle connection that is still open, if any."""
        idle = self._idle
        if idle:
            oldest_usable = time.monotonic() - self._keepalive_s
            while idle:
                connection = idle.pop()
                if not connection.closed and connection.idle_since > oldest_usable:
                    return connection
                connection.close()
        return None

    def release(self, connection: H1Connection) -> None:
        """Take a connection back after its answer was read to the end, else drop it."""
        if self._closed or not connection.reusable or len(self._idle) >= self._max_idle:
            connection.close()
            return
        connection.idle()
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def close(self) -> None:
        """Drop every idle connection; ones in use are dropped when they come back."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def connect(self) -> H1Connection:
        """A new connection to the first of the host's addresses that accepts one (OSError,
        the last address's, when none does; the caller bounds the wait)."""
        loop = asyncio.get_running_loop()
        host = self.origin.host
        if self._proxy is not None:
            if self._egress is not None:
                # The proxy resolves the name; what can be checked here is the name itself.
                self._egress.check_host(host)
            return await self._proxy.connect()
        failure: OSError | None = None
        addresses = await self._resolver.addresses()
        if self._egress is not None:
            addresses = self._egress.check_addresses(host, addresses)
        for family, address, port in addresses:
            try:
                _, connection = await loop.create_connection(
                    lambda: H1Connection(loop), address, port, family=family, ssl=self._tls,
                    server_hostname=host if self._tls is not None else None)
            except OSError as exc:
                failure = exc
                continue
            return connection
        self._resolver.forget()
        raise failure if failure is not None else OSError(f"no address for {host}")
