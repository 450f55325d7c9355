"""Outbound proxies from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl and requests read them.

Many companies reach the internet only through a forward proxy. The variables (lower-case
forms win over upper-case ones; ALL_PROXY is the fallback for both schemes):

- `https_proxy` for https origins: a CONNECT tunnel through the proxy, then TLS with the
  origin inside it; the certificate checked is the origin's, for the origin's name;
- `http_proxy` for plain http origins: requests in absolute form (`GET http://host/path`)
  sent to the proxy;
- `no_proxy`: comma-separated exceptions: `*` (no proxy at all), host names matched with
  their subdomains (`example.com` and `.example.com` both cover `api.example.com`), IP
  addresses, CIDR blocks (`10.0.0.0/8`), and any of these with `:port` to match one port.

A user and password in the proxy URL (`http://user:pass@proxy:3128`) become a
`Proxy-Authorization: Basic` header; they never appear in a repr, a log line or an error.
The decision is made once per origin, when its connection pool is built: with no proxy
variables set, nothing here runs on the request path at all.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import unquote, urlsplit

from provider_router.connectors.h1 import H1Connection
from provider_router.connectors.resolver import Resolver

if TYPE_CHECKING:
    from provider_router.connectors.h1_pool import Origin

P = TypeVar("P", bound=asyncio.Protocol)

# A proxy's answer to CONNECT larger than this is not one.
_MAX_REPLY_HEAD = 16 * 1024


class ProxyError(OSError):
    """The proxy could not be reached or refused the tunnel (no secrets in the message)."""


class BadProxySetting(ValueError):
    """A proxy variable that cannot be used (its value is not repeated: it may hold a
    password)."""

    def __init__(self, variable: str, expected: str) -> None:
        super().__init__(f"{variable}: expected {expected}")
        self.variable = variable
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Proxy:
    """One forward proxy: where it listens and the credentials it wants, if any."""

    host: str
    port: int
    # "Basic <base64>" from the URL's userinfo; the credentials themselves.
    authorization: str = field(default="", repr=False)

    @property
    def address(self) -> str:
        """host:port, for messages (never the credentials)."""
        return f"{self.host}:{self.port}"

    def header_lines(self) -> str:
        """The Proxy-Authorization header line ("" when the proxy wants none)."""
        return f"Proxy-Authorization: {self.authorization}\r\n" if self.authorization else ""


def parse_proxy(name: str, value: str) -> Proxy:
    """A proxy from a variable's URL (scheme-less means http://); BadProxySetting otherwise."""
    url = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadProxySetting(name, "a proxy URL such as http://proxy:3128") from None
    if parts.scheme.lower() != "http":
        raise BadProxySetting(name, f"an http:// proxy URL (scheme {parts.scheme!r} is not "
                              "supported)")
    if not parts.hostname:
        raise BadProxySetting(name, "a proxy URL naming a host")
    authorization = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port or 80, authorization)


@dataclass(frozen=True, slots=True)
class _Bypass:
    """One NO_PROXY entry: a domain (with its subdomains) or a network, maybe one port."""

    domain: str = ""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int = 0

    def matches(self, host: str, port: int) -> bool:
        """Whether a connection to host:port goes around the proxy."""
        if self.port and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        return host == self.domain or host.endswith("." + self.domain)


def _parse_bypass(entry: str) -> _Bypass:
    """One NO_PROXY entry: `host`, `.domain`, `10.0.0.0/8`, `1.2.3.4`, each maybe `:port`."""
    entry = entry.strip().lower()
    host, port = entry, 0
    if entry.startswith("["):  # [::1]:8080
        inside, _, rest = entry[1:].partition("]")
        host = inside
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 0
    elif entry.count(":") == 1:
        name, _, maybe_port = entry.partition(":")
        if maybe_port.isdigit():
            host, port = name, int(maybe_port)
    try:
        return _Bypass(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        return _Bypass(domain=host.lstrip(".").rstrip("."), port=port)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxies from the environment and the origins that bypass them."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass_all: bool = False
    exceptions: tuple[_Bypass, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxySettings | None:
        """The settings the variables describe; None when no proxy is set."""
        fallback = _first(env, "all_proxy", "ALL_PROXY")
        https = _first(env, "https_proxy", "HTTPS_PROXY") or fallback
        http = _first(env, "http_proxy", "HTTP_PROXY") or fallback
        if https is None and http is None:
            return None
        no_proxy = _first(env, "no_proxy", "NO_PROXY")
        entries = [e.strip() for e in (no_proxy[1] if no_proxy else "").split(",") if e.strip()]
        return cls(http=parse_proxy(*http) if http else None,
                   https=parse_proxy(*https) if https else None,
                   bypass_all="*" in entries,
                   exceptions=tuple(_parse_bypass(e) for e in entries if e != "*"))

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy to reach this origin through, or None to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass_all:
            return None
        host = host.lower().strip("[]").rstrip(".")
        if any(rule.matches(host, port) for rule in self.exceptions):
            return None
        return proxy


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of the variables that is set and not blank, as (name, value)."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


class ProxyConnector:
    """Opens connections to one origin through one proxy (a tunnel for https)."""

    def __init__(self, proxy: Proxy, origin: Origin, tls: ssl.SSLContext | None) -> None:
        self.proxy = proxy
        self._origin = origin
        self._tls = tls
        self._resolver = Resolver(proxy.host, proxy.port)

    async def connect(self) -> H1Connection:
        """A connection ready for requests to the origin (ProxyError when the proxy fails)."""
        loop = asyncio.get_running_loop()
        if self._tls is None:
            # Plain http: the proxy is the peer; requests go to it in absolute form.
            return await self._dial(lambda: H1Connection(loop))
        reply = _ConnectReply(loop)
        await self._dial(lambda: reply)
        origin = self._origin
        authority = f"[{origin.host}]" if ":" in origin.host else origin.host
        reply.send(f"CONNECT {authority}:{origin.port} HTTP/1.1\r\n"
                   f"Host: {authority}:{origin.port}\r\n{self.proxy.header_lines()}\r\n")
        try:
            await reply.established(self.proxy.address, f"{authority}:{origin.port}")
            connection = H1Connection(loop)
            transport = await loop.start_tls(reply.transport, connection, self._tls,
                                             server_hostname=origin.host)
        except BaseException:
            reply.transport.abort()
            raise
        if transport is None:
            raise ProxyError(f"TLS through proxy {self.proxy.address} did not start")
        connection.connection_made(transport)
        return connection

    async def _dial(self, factory: Callable[[], P]) -> P:
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        try:
            addresses = await self._resolver.addresses()
        except OSError as exc:
            raise ProxyError(f"proxy {self.proxy.address} does not resolve "
                             f"({exc.strerror or exc})") from None
        for family, address, port in addresses:
            try:
                _, protocol = await loop.create_connection(factory, address, port,
                                                           family=family)
            except OSError as exc:
                failure = exc
                continue
            return protocol
        self._resolver.forget()
        reason = failure.strerror if failure is not None and failure.strerror else failure
        raise ProxyError(f"cannot connect to proxy {self.proxy.address}: {reason}")


class _ConnectReply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT (a head, no body), then steps aside for TLS."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done: asyncio.Future[bytes] = loop.create_future()
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    @property
    def transport(self) -> asyncio.Transport:
        """The connection to the proxy (made before anything else is asked of this)."""
        assert self._transport is not None
        return self._transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's TCP transports are not asyncio.Transport subclasses, so no isinstance.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, head: str) -> None:
        """Write the CONNECT request."""
        self.transport.write(head.encode("latin-1"))

    def data_received(self, data: bytes) -> None:
        """Collect the reply's head."""
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end >= 0 and not self._done.done():
            self._done.set_result(self._buffer[:end])
        elif len(self._buffer) > _MAX_REPLY_HEAD and not self._done.done():
            self._done.set_exception(ProxyError("the proxy's reply to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        """The proxy hung up before answering."""
        if not self._done.done():
            self._done.set_exception(ProxyError("the proxy closed the connection before "
                                                "answering CONNECT"))

    async def established(self, proxy: str, authority: str) -> None:
        """Return once the proxy answered 2xx; ProxyError with its status otherwise."""
        head = await self._done
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
        parts = status_line.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if not parts[0].startswith("HTTP/1.") or not code:
            raise ProxyError(f"proxy {proxy} answered CONNECT with something not HTTP")
        if not 200 <= code < 300:
            reason = parts[2].strip()[:100] if len(parts) > 2 else ""
            raise ProxyError(f"proxy {proxy} refused CONNECT to {authority}: "
                             f"{code} {reason}".rstrip())
