"""The HTTP/1.1 client connection and pool against a raw TCP server that sends exact bytes.

The protocol fakes (tests/fakes) speak through aiohttp.web, which always answers well; the
cases here are the ones a real server or proxy may produce that aiohttp.web would not:
compressed bodies, bodies ended by close, informational heads, oversized heads, answers that
refuse keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from provider_router.connectors.errormap import table_mapper
from provider_router.connectors.h1 import (
    ConnectionLost,
    H1Connection,
    MalformedResponse,
    ReadTimeout,
)
from provider_router.connectors.h1_pool import (
    ConnectionPool,
    Origin,
    Target,
    request_head,
    split_url,
)
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.timing import PhaseTimeouts
from provider_router.errors import (
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderServerError,
)
from provider_router.resilience.deadline import Deadline

Answer = Callable[[bytes], bytes | None]


@dataclass
class RawServer:
    """Answers each request (read up to the end of its head and body) with `answer(request)`;
    None closes the connection without a word. Closes after answering when `close_after`."""

    answer: Answer
    close_after: bool = False
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., RawServer]]:
    servers: list[asyncio.Server] = []
    made: list[RawServer] = []

    def start(answer: Answer, **kw: bool) -> RawServer:
        raw = RawServer(answer, **kw)
        made.append(raw)
        return raw

    async def started() -> None:
        for raw in made:
            if not raw.port:
                server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
                servers.append(server)
                raw.port = server.sockets[0].getsockname()[1]

    start.started = started  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.close()


async def pool_for(serve: Callable[..., RawServer], answer: Answer, **kw: bool
                   ) -> tuple[RawServer, ConnectionPool, Target]:
    raw = serve(answer, **kw)
    await serve.started()  # type: ignore[attr-defined]
    target = split_url(f"http://127.0.0.1:{raw.port}/v1/x")
    return raw, ConnectionPool(target.origin, None, max_idle=4, keepalive_s=30.0), target


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def call(pool: ConnectionPool, target: Target, body: bytes = b"{}") -> tuple[int, bytes]:
    connection = pool.idle_connection() or await pool.connect()
    connection.send(request_head("POST", target, {"Content-Type": "application/json"},
                                 len(body)), body)
    data = await connection.read_body(1 << 20)
    status = connection.status
    pool.release(connection)
    return status, data


async def test_keep_alive_reuses_one_connection(serve: Callable[..., RawServer]) -> None:
    raw, pool, target = await pool_for(serve, lambda _: ok(b'{"a":1}'))
    for _ in range(3):
        assert await call(pool, target) == (200, b'{"a":1}')
    assert raw.connections == 1 and len(raw.requests) == 3


async def test_connection_close_is_not_reused(serve: Callable[..., RawServer]) -> None:
    raw, pool, target = await pool_for(serve, lambda _: ok(b"{}", "Connection: close"))
    for _ in range(2):
        assert await call(pool, target) == (200, b"{}")
    assert raw.connections == 2


async def test_request_head_carries_host_length_and_defaults(
        serve: Callable[..., RawServer]) -> None:
    raw, pool, target = await pool_for(serve, lambda _: ok(b"{}"))
    await call(pool, target, b'{"q":1}')
    head = raw.requests[0].decode()
    assert head.startswith("POST /v1/x HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{raw.port}\r\n" in head
    assert "Content-Length: 7\r\n" in head and head.endswith('\r\n\r\n{"q":1}')
    assert "Accept-Encoding: gzip, deflate\r\n" in head


@pytest.mark.parametrize("encoding,compress", [
    ("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_compressed_bodies_are_inflated(serve: Callable[..., RawServer], encoding: str,
                                              compress: Callable[[bytes], bytes]) -> None:
    _, pool, target = await pool_for(
        serve, lambda _: ok(compress(b'{"big":"' + b"x" * 5000 + b'"}'),
                            f"Content-Encoding: {encoding}"))
    status, body = await call(pool, target)
    assert status == 200 and body == b'{"big":"' + b"x" * 5000 + b'"}'


async def test_unknown_encoding_is_refused(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(serve, lambda _: ok(b"xx", "Content-Encoding: br"))
    with pytest.raises(MalformedResponse, match="content-encoding 'br'"):
        await call(pool, target)


async def test_body_ended_by_close_is_complete(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(
        serve, lambda _: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"whole\":true}",
        close_after=True)
    assert await call(pool, target) == (200, b'{"whole":true}')
    assert pool.idle_connection() is None  # never reused


async def test_cut_body_with_a_length_is_lost(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(
        serve, lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut",
        close_after=True)
    with pytest.raises(ConnectionLost, match="before the response ended"):
        await call(pool, target)


async def test_informational_head_is_skipped(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(
        serve, lambda _: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}", "X-Real: yes"))
    connection = await pool.connect()
    connection.send(request_head("POST", target, {}, 2), b"{}")
    assert await connection.read_body(1024) == b"{}"
    assert connection.status == 200 and connection.headers["x-real"] == "yes"


async def test_oversized_head_is_refused(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(
        serve, lambda _: ok(b"{}", *(f"X-Pad-{i}: {'p' * 1000}" for i in range(80))))
    with pytest.raises(MalformedResponse, match="head over"):
        await call(pool, target)


async def test_garbage_is_malformed(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(serve, lambda _: b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with pytest.raises(MalformedResponse):
        await call(pool, target)


async def test_body_over_the_limit_is_refused(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(serve, lambda _: ok(b"x" * 300_000))
    connection = await pool.connect()
    connection.send(request_head("GET", target, {}, None), None)
    with pytest.raises(MalformedResponse, match="over 1000 bytes"):
        await connection.read_body(1000)


async def test_duplicate_headers_are_joined(serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(serve, lambda _: ok(b"{}", "Vary: a", "VARY: b"))
    connection = await pool.connect()
    connection.send(request_head("GET", target, {}, None), None)
    await connection.read_body(1024)
    assert connection.headers["vary"] == "a, b"


async def test_stale_and_closed_idle_connections_are_not_lent(
        serve: Callable[..., RawServer]) -> None:
    raw, pool, target = await pool_for(serve, lambda _: ok(b"{}"))
    await call(pool, target)
    connection = pool.idle_connection()
    assert connection is not None
    connection.idle_since -= 31.0  # older than keepalive_s
    pool.release(connection)
    connection.idle_since -= 31.0
    assert pool.idle_connection() is None and connection.closed
    await call(pool, target)
    pool.close()
    assert pool.idle_connection() is None and raw.connections == 2


async def test_slow_reader_pauses_the_socket(serve: Callable[..., RawServer]) -> None:
    big = b"y" * 2_000_000
    _, pool, target = await pool_for(serve, lambda _: ok(big))
    connection = await pool.connect()
    connection.send(request_head("GET", target, {}, None), None)
    await connection.read_head()
    await asyncio.sleep(0.2)  # the reader is away; at most about one pause's worth waits
    waiting = len(connection.take())
    assert 0 < waiting < len(big)
    rest = b""
    while chunk := await connection.read_chunk():
        rest += chunk
    assert waiting + len(rest) == len(big)


def test_split_url_shapes() -> None:
    assert split_url("https://api.example.com/v1/chat?x=1#frag") == Target(
        Origin("https", "api.example.com", 443), "/v1/chat?x=1", "api.example.com",
        "Host: api.example.com\r\n")
    assert split_url("http://[::1]:8080") == Target(Origin("http", "::1", 8080), "/", "[::1]:8080",
                                                    "Host: [::1]:8080\r\n")
    assert split_url("http://bücher.example/a b").path == "/a%20b"
    assert split_url("http://bücher.example/").origin.host == "xn--bcher-kva.example"
    assert split_url("https://h/models/gemini-2.0:generateContent").path == (
        "/models/gemini-2.0:generateContent")
    assert split_url("https://h/%41").path == "/%41"  # already escaped: left alone
    for bad in ("ftp://h/x", "http:///x", "https://user:pw@h/x"):
        with pytest.raises(ValueError):
            split_url(bad)


def test_caller_headers_win_over_defaults() -> None:
    target = split_url("http://h/x")
    head = request_head("GET", target, {"accept-encoding": "identity", "User-Agent": "me"},
                        None).decode()
    assert "Accept-Encoding: gzip" not in head and "accept-encoding: identity" in head
    assert "User-Agent: me" in head and "provider-router" not in head
    assert "Content-Length" not in head


async def test_client_maps_transport_failures_to_provider_errors(
        serve: Callable[..., RawServer]) -> None:
    replies = {b"/garbage": b"NOT HTTP\r\n\r\n", b"/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 9"
               b"\r\n\r\n{", b"/silent": None}

    def answer(request: bytes) -> bytes | None:
        return replies[request.split(b" ")[1]]

    raw = serve(answer, close_after=True)
    await serve.started()  # type: ignore[attr-defined]
    client = HttpClient("p", PhaseTimeouts(5, 5, 5, 5), table_mapper(()))
    expected = {"/garbage": ProviderProtocolError, "/cut": ProviderServerError,
                "/silent": ProviderConnectionError}
    for path, error in expected.items():
        with pytest.raises(error):
            await client.request_json(HttpCall("POST", f"http://127.0.0.1:{raw.port}{path}",
                                               {}, {}), Deadline.after(5))
    await client.aclose()


async def drip_server(parts: list[tuple[float, bytes]]) -> tuple[asyncio.Server, Target]:
    """A server that answers any request with `parts`, each after its delay, then holds."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for delay, data in parts:
            await asyncio.sleep(delay)
            writer.write(data)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, split_url(f"http://127.0.0.1:{port}/s")


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def open_stream(parts: list[tuple[float, bytes]]) -> tuple[asyncio.Server, H1Connection]:
    server, target = await drip_server([(0.0, CHUNKED_HEAD), *parts])
    connection = await ConnectionPool(target.origin, None, max_idle=1, keepalive_s=30).connect()
    connection.send(request_head("GET", target, {}, None), None)
    await connection.read_head()
    return server, connection


async def test_read_expires_when_nothing_comes() -> None:
    server, connection = await open_stream([])
    loop = asyncio.get_running_loop()
    connection.expire_in(0.15)
    started = loop.time()
    with pytest.raises(ReadTimeout):
        await connection.read_chunk()
    assert 0.1 <= loop.time() - started < 0.5
    connection.close()
    server.close()


async def test_a_moved_expiry_is_honoured_both_ways() -> None:
    server, connection = await open_stream([(0.1, b"1\r\na\r\n"), (0.25, b"1\r\nb\r\n")])
    loop = asyncio.get_running_loop()
    connection.expire_in(0.2)
    assert await connection.read_chunk() == b"a"  # at 0.1
    # Later than the armed timer (0.2): it fires early, re-arms, and does not expire the read.
    connection.expire_in(0.4)
    assert await connection.read_chunk() == b"b"  # at 0.35
    # Sooner than the one armed now: the read ends at the new expiry, not the old one.
    connection.expire_in(30.0)
    connection.expire_in(0.1)
    started = loop.time()
    with pytest.raises(ReadTimeout):
        await connection.read_chunk()
    assert loop.time() - started < 1.0
    connection.close()
    server.close()


async def test_a_connection_back_in_the_pool_keeps_no_timer(
        serve: Callable[..., RawServer]) -> None:
    _, pool, target = await pool_for(serve, lambda _: ok(b"{}"))
    connection = await pool.connect()
    connection.send(request_head("GET", target, {}, None), None)
    connection.expire_in(60.0)
    await connection.read_body(1024)
    assert connection._timer is not None  # armed by the wait
    pool.release(connection)
    assert connection._timer is None and pool.idle_connection() is connection


async def test_a_whole_body_larger_than_the_pause_threshold_is_read(
        serve: Callable[..., RawServer]) -> None:
    big = b'{"text":"' + b"z" * 3_000_000 + b'"}'
    raw, pool, target = await pool_for(serve, lambda _: ok(big))
    client = HttpClient("p", PhaseTimeouts(5, 5, 5, 5), table_mapper(()))
    answer = await client.request_json(HttpCall("POST", f"http://127.0.0.1:{raw.port}/big",
                                                {}, {}), Deadline.after(5))
    assert answer == {"text": "z" * 3_000_000}
    connection = await pool.connect()  # and the connection itself, read whole
    connection.send(request_head("GET", target, {}, None), None)
    assert await connection.read_body(10_000_000) == big
    await client.aclose()


async def test_the_pool_keeps_at_most_max_idle_connections(
        serve: Callable[..., RawServer]) -> None:
    raw, pool, target = await pool_for(serve, lambda _: ok(b"{}"))  # max_idle=4
    connections = [await pool.connect() for _ in range(6)]
    for connection in connections:
        connection.send(request_head("GET", target, {}, None), None)
        await connection.read_body(1024)
        pool.release(connection)
    kept = [c for c in connections if not c.closed]
    assert len(kept) == 4 and raw.connections == 6
    lent = {id(pool.idle_connection()) for _ in range(4)}
    assert lent == {id(c) for c in kept} and pool.idle_connection() is None
