"""The one pooled HTTP client per connector: keep-alive HTTP/1.1 over h1_pool.py.

Our own small client on httptools rather than aiohttp: in a loop of keep-alive POSTs under
callgrind, aiohttp's ClientSession spent about 370k CPU instructions per request, a bare
httptools protocol about 30k; end to end the switch took a routed Chat from 1.29M to 1.03M
instructions (python -m bench.instructions, issue 6). httpx was slower than aiohttp. The
parsing, the part that must be exact, is httptools' (llhttp).

Every failure leaves here as a ProviderError subclass; a caller's cancellation closes the
upstream connection at once and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field

from provider_router.connectors.egress import EgressPolicy, EgressRefused
from provider_router.connectors.errormap import ErrorMapper
from provider_router.connectors.h1 import H1Connection, MalformedResponse, ReadTimeout
from provider_router.connectors.h1_pool import (
    ConnectionPool,
    Origin,
    Target,
    request_head,
    split_url,
)
from provider_router.connectors.payload import dumps_bytes, parse_json
from provider_router.connectors.proxy import ProxySettings
from provider_router.connectors.streaming import StreamDecoder
from provider_router.connectors.timing import PhaseClock, PhaseTimeouts
from provider_router.domain import JsonObject, JsonValue, ProbeResult, StreamEvent
from provider_router.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnreachableError,
)
from provider_router.resilience.deadline import Deadline

DEFAULT_MAX_IDLE = 256
"""Idle keep-alive connections kept per origin when the spec sets no max_concurrent."""
KEEPALIVE_S = 30.0
"""An idle connection older than this is not reused (servers drop theirs around then)."""

# Error bodies are read only this far: enough for any provider's message.
_MAX_ERROR_BODY = 64 * 1024
# A successful answer larger than this is not a chat completion; refusing it bounds memory.
_MAX_BODY = 64 * 1024 * 1024
# Header values with tokens this long may be credentials; they are cut out of error bodies.
_MIN_SECRET_TOKEN = 12
# How long the end of a finished stream may take before its connection is dropped instead;
# the end of the body normally arrives with the terminator, so this is rarely waited for.
_DRAIN_S = 0.05
# Parsed URLs kept per client; connectors use a handful (one per model at most for Gemini).
_MAX_TARGETS = 1024


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One request to a provider. Headers carry the key, so they never appear in a repr."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: JsonObject | None = None


class HttpClient:
    """Keep-alive connection pools (one per origin) with deadline-driven phase timeouts."""

    def __init__(self, provider: str, timeouts: PhaseTimeouts, map_error: ErrorMapper, *,
                 max_idle: int = 0, egress: EgressPolicy | None = None,
                 proxies: ProxySettings | None = None) -> None:
        self._provider = provider
        self._egress = egress
        self._proxies = proxies
        # Proxy credentials, cut out of error bodies like our own headers' values are.
        self._proxy_secrets = tuple(
            p.authorization.split()[-1] for p in (proxies.http, proxies.https)
            if p is not None and p.authorization) if proxies is not None else ()
        self._timeouts = timeouts
        self._map_error = map_error
        self._max_idle = max_idle if max_idle > 0 else DEFAULT_MAX_IDLE
        self._pools: dict[Origin, ConnectionPool] = {}
        self._targets: dict[str, Target] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    @property
    def timeouts(self) -> PhaseTimeouts:
        """The resolved phase timeouts."""
        return self._timeouts

    async def aclose(self) -> None:
        """Close every pool; safe to call twice."""
        self._closed = True
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    async def request_json(self, call: HttpCall, deadline: Deadline) -> JsonValue:
        """A unary call: the decoded JSON body of a 2xx answer, else the mapped error."""
        clock = PhaseClock(self._provider, self._timeouts, deadline, streaming=False)
        pool, connection = await self._send(call, clock)
        try:
            # One expiry for the whole answer: a unary call has no phase after connect.
            body = await self._read(connection, clock, _MAX_BODY)
            if connection.status >= 300:
                raise self._error(call, connection, body)
        except BaseException:
            connection.close()
            raise
        pool.release(connection)
        try:
            return parse_json(body)
        except ValueError:
            raise ProviderProtocolError(
                self._provider, f"HTTP {connection.status} body is not JSON") from None

    async def stream(self, call: HttpCall, deadline: Deadline,
                     decoder: StreamDecoder) -> AsyncGenerator[StreamEvent, None]:
        """A streaming call: deltas as they arrive, then exactly one StreamFinish."""
        clock = PhaseClock(self._provider, self._timeouts, deadline, streaming=True)
        pool, connection = await self._send(call, clock, head=True)
        clean = False
        try:
            if connection.status >= 300:
                body = await self._read(connection, clock, _MAX_ERROR_BODY, capped=True)
                raise self._error(call, connection, body)
            delivered = 0
            interrupted = ""
            while not decoder.done and not interrupted:
                chunk, interrupted = await self._next_chunk(connection, clock, decoder)
                if not chunk:
                    break
                events = decoder.feed(chunk)
                if events:
                    clock.saw_delta()  # once per read: the next wait restarts the idle window
                    delivered += len(events)
                    for event in events:
                        yield event
            tail = [] if decoder.done else decoder.close()
            for event in tail:
                delivered += 1
                yield event
            final = decoder.finish()
            if final is None:
                raise self._cut(delivered, interrupted)
            # Reading the (normally empty) rest of the body returns the connection to the pool.
            # It happens before the final event: consumers stop iterating once they have it.
            clean = not interrupted and (await _drained(connection) if decoder.done else True)
            yield final
        finally:
            # Anything but a clean finish (an error, a cancel, a consumer that stopped early)
            # drops the connection so the provider stops generating at once.
            if clean:
                pool.release(connection)
            else:
                connection.close()

    async def probe(self, call: HttpCall, timeout_s: float) -> ProbeResult:
        """A cheap GET that must answer 2xx with JSON; never raises a ProviderError."""
        started = time.monotonic()
        try:
            await self.request_json(call, Deadline.after(timeout_s))
        except ProviderError as exc:
            return ProbeResult(False, exc.message, (time.monotonic() - started) * 1000)
        return ProbeResult(True, "", (time.monotonic() - started) * 1000)

    async def _send(self, call: HttpCall, clock: PhaseClock, *, head: bool = False
                    ) -> tuple[ConnectionPool, H1Connection]:
        """Send the request on a pooled (or new) connection; with `head`, also await the
        response head. There are no redirects: one to another host would carry our key
        header along."""
        target = self._target(call.url)
        pool = self._pool(target.origin)
        data: bytes | None = None
        headers = call.headers
        if call.body is not None:
            body = call.body if type(call.body) is dict else dict(call.body)
            data = dumps_bytes(body)
            if "Content-Type" not in headers:
                headers = {**headers, "Content-Type": "application/json"}
        request = request_head(call.method, target, headers,
                               len(data) if data is not None else None)
        connection = pool.idle_connection() or await self._connect(pool, clock)
        phase, limit = "", 0.0
        try:
            connection.send(request, data)
            if head:
                left, phase, limit = clock.window()
                connection.expire_in(left)
                await connection.read_head()
        except ReadTimeout:
            connection.close()
            raise clock.expired(phase, limit) from None
        except ConnectionError as exc:
            connection.close()
            raise self._broken(connection, exc) from exc
        except BaseException:
            connection.close()
            raise
        return pool, connection

    async def _connect(self, pool: ConnectionPool, clock: PhaseClock) -> H1Connection:
        """A new connection within the connect timeout, or the call's phase when that ends
        sooner."""
        connect_s = self._timeouts.connect
        left, phase, limit = clock.window()
        expired = (ProviderTimeoutError(self._provider, "connect", connect_s)
                   if connect_s <= left else clock.expired(phase, limit))
        origin = pool.origin
        scope = asyncio.timeout(min(connect_s, left))
        try:
            async with scope:
                return await pool.connect()
        except TimeoutError:
            if scope.expired():
                raise expired from None
            raise
        except EgressRefused as exc:
            # Not retried: the address will not become allowed by trying again.
            raise ProviderUnavailableError(self._provider, str(exc)) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProviderUnreachableError(
                self._provider, f"cannot connect to {origin.host}:{origin.port}: {reason}"
            ) from exc

    def _pool(self, origin: Origin) -> ConnectionPool:
        pool = self._pools.get(origin)
        if pool is None:
            if self._closed:
                raise ProviderUnavailableError(self._provider, "connector is closed")
            tls = self._tls_context() if origin.scheme == "https" else None
            proxy = (self._proxies.for_origin(*origin) if self._proxies is not None else None)
            pool = self._pools[origin] = ConnectionPool(
                origin, tls, max_idle=self._max_idle, keepalive_s=KEEPALIVE_S,
                egress=self._egress, proxy=proxy)
        return pool

    def _tls_context(self) -> ssl.SSLContext:
        # Made once per client: loading the trust store takes milliseconds.
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            try:
                target = split_url(url)
            except ValueError as exc:
                raise ProviderUnavailableError(self._provider, f"bad URL: {exc}") from None
            if self._proxies is not None:
                target = _through_proxy(target, self._proxies)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        return target

    async def _read(self, connection: H1Connection, clock: PhaseClock, limit: int, *,
                    capped: bool = False) -> bytes:
        """The body within the clock's window (an error body only up to `limit` when
        `capped`)."""
        left, phase, limit_s = clock.window()
        connection.expire_in(left)
        try:
            if capped:
                return await _read_capped(connection, limit)
            return await connection.read_body(limit)
        except ReadTimeout:
            raise clock.expired(phase, limit_s) from None
        except ConnectionError as exc:
            raise self._broken(connection, exc) from exc

    def _broken(self, connection: H1Connection, exc: ConnectionError) -> ProviderError:
        """What a transport failure means for the call, by how far the answer had come."""
        if isinstance(exc, MalformedResponse):
            return ProviderProtocolError(self._provider, str(exc))
        if not connection.head_done:
            return ProviderConnectionError(
                self._provider, f"connection failed before a response ({exc})")
        return ProviderServerError(
            self._provider, f"connection lost while reading HTTP {connection.status} body "
            f"({exc})", status_code=connection.status)

    async def _next_chunk(self, connection: H1Connection, clock: PhaseClock,
                          decoder: StreamDecoder) -> tuple[bytes, str]:
        left, phase, limit = clock.window()
        connection.expire_in(left)
        try:
            return await connection.read_chunk(), ""
        except ReadTimeout:
            # The provider sent its finish reason (and usage) but neither its terminator nor
            # the end of the body: the answer is complete, so silence ends it like an EOF
            # would, instead of breaking a finished answer.
            if decoder.finish() is None:
                raise clock.expired(phase, limit) from None
            return b"", "no terminator after the finish reason"
        except ConnectionError as exc:
            return b"", str(exc)

    def _cut(self, delivered: int, interrupted: str) -> ProviderServerError:
        if interrupted:
            what = f"stream interrupted ({interrupted})"
        else:
            what = "stream ended without terminator"
        return ProviderServerError(self._provider, f"{what} after {delivered} events")

    def _error(self, call: HttpCall, connection: H1Connection, body: bytes) -> ProviderError:
        text = body[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")
        for value in (*call.headers.values(), *self._proxy_secrets):
            for token in value.split():
                if len(token) >= _MIN_SECRET_TOKEN:
                    text = text.replace(token, "[redacted]")
        return self._map_error(self._provider, connection.status, text, connection.headers)


def _through_proxy(target: Target, proxies: ProxySettings) -> Target:
    """A plain-http target sent to its proxy: the absolute-form request line and the
    proxy's credentials (https goes through a CONNECT tunnel and needs neither)."""
    origin = target.origin
    proxy = proxies.for_origin(*origin) if origin.scheme == "http" else None
    if proxy is None:
        return target
    return Target(origin, f"http://{target.host_header}{target.path}", target.host_header,
                  target.host_lines + proxy.header_lines())


async def _read_capped(connection: H1Connection, limit: int) -> bytes:
    """The body up to `limit` bytes (an error body of a streaming call)."""
    body = b""
    while len(body) < limit:
        chunk = await connection.read_chunk()
        if not chunk:
            break
        body += chunk
    return body


async def _drained(connection: H1Connection) -> bool:
    """Whether the rest of a finished stream's body arrived (briefly waited for)."""
    if connection.complete:
        connection.take()  # bytes after the terminator, if any: read, not used
        return True
    connection.expire_in(_DRAIN_S)
    try:
        while await connection.read_chunk():
            pass
    except (ReadTimeout, ConnectionError):
        return False
    return True
