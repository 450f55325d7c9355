"""One HTTP/1.1 client connection: an asyncio protocol around httptools' response parser.

Why not aiohttp: its ClientSession spends about 370k CPU instructions on every request in
Python-level bookkeeping (request and response objects, header multidicts, a writer task,
timer handles), more than the whole router's own logic; a bare protocol like this one about
30k (both counted under callgrind). httptools (llhttp, the parser behind uvicorn) does the
parsing, which is the part that must be exact; what is left here is framing one request and
handing the answer's bytes to exactly one reader.

A connection serves one request at a time; its pool (h1_pool.py) lends it out and takes it
back only when the answer was read to its end and both sides keep the connection alive.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from typing import cast

import httptools

# A response head larger than this is not an LLM API's; refusing it bounds memory.
MAX_HEAD_BYTES = 64 * 1024
# A stream's socket stops being read while this much body waits for its reader (a slow
# consumer). A whole-body read is bounded by its own limit instead.
_PAUSE_AT = 256 * 1024
_INFLATE_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
                  "deflate": zlib.MAX_WBITS}


class ConnectionLost(ConnectionError):
    """The connection closed (or failed) before the answer was complete."""


class MalformedResponse(ConnectionError):
    """The peer's bytes are not a valid HTTP/1.1 response."""


class ReadTimeout(TimeoutError):
    """The awaited part of the answer did not come before the reader's expiry."""


class H1Connection(asyncio.Protocol):
    """Reads one response at a time; the body arrives in the order it was received."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._pause_at = _PAUSE_AT
        self._inflate: zlib._Decompress | None = None
        self._head_bytes = 0
        self._error: ConnectionError | None = None
        self._closed = False
        self._keep_alive = False
        self.status = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] | None = None
        self.complete = False
        self.idle_since = 0.0
        # The loop time by which an awaited read must be answered, and the one timer that
        # enforces it. A stream moves the expiry on every chunk; the timer is not moved
        # along (a heap operation each time) but, when it fires early, re-armed once for
        # wherever the expiry is by then.
        self._expiry = math.inf
        self._timer: asyncio.TimerHandle | None = None

    # --- the reader's side ------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None) -> None:
        """Write one request; its answer is read with the methods below."""
        assert self._transport is not None
        self.status, self.complete = 0, False
        self._raw_headers, self._headers = [], None
        self._keep_alive = False
        self._head_bytes = 0
        self._inflate = None
        if body:
            self._transport.writelines((head, body))
        else:
            self._transport.write(head)

    def expire_in(self, seconds: float) -> None:
        """Reads from now on fail with ReadTimeout unless answered within `seconds`."""
        expiry = self._loop.time() + seconds
        self._expiry = expiry
        timer = self._timer
        if timer is not None and expiry < timer.when():
            timer.cancel()  # sooner than it would fire: armed anew by the next wait
            self._timer = None

    def _disarm(self) -> None:
        self._expiry = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # nobody waits; the next wait arms the timer again
        if self._loop.time() < self._expiry:
            self._timer = self._loop.call_at(self._expiry, self._on_timer)
            return
        self._waiter.set_exception(ReadTimeout())

    async def read_head(self) -> None:
        """Wait until the status line and headers are in."""
        while not self.head_done:
            await self._wait()

    async def read_body(self, limit: int) -> bytes:
        """The whole body; MalformedResponse beyond `limit` bytes."""
        # Nobody takes pieces before the end here, so pausing at the stream threshold would
        # wait forever: the socket is read up to the limit instead.
        self._pause_at = limit
        self._resume()
        while not self.complete:
            if self._buffered > limit:
                raise MalformedResponse(f"response body over {limit} bytes")
            await self._wait()
        return self.take()

    async def read_chunk(self) -> bytes:
        """The body received since the last read (waiting for some); b"" once it ended."""
        self._pause_at = _PAUSE_AT
        while not self._chunks and not self.complete:
            await self._wait()
        return self.take()

    def take(self) -> bytes:
        """The body bytes buffered so far, without waiting."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        self._resume()
        return data

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        if self._timer is None and self._expiry != math.inf:
            if self._loop.time() >= self._expiry:
                raise ReadTimeout()
            self._timer = self._loop.call_at(self._expiry, self._on_timer)
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None and not self.complete:
            raise self._error

    @property
    def head_done(self) -> bool:
        """Whether the answer's status line and headers are in (a status of 200 or more)."""
        return self.status != 0

    @property
    def headers(self) -> dict[str, str]:
        """The answer's headers, names lower-cased; a repeated header's values joined with
        ", " as HTTP allows for list values. Decoded when first asked for."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for raw_name, raw_value in self._raw_headers:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                previous = headers.get(name)
                headers[name] = value if previous is None else f"{previous}, {value}"
            self._headers = headers
        return self._headers

    def _header(self, lowered: bytes) -> str:
        """One header's value ("" when absent) without decoding the others."""
        size = len(lowered)
        values = [value.decode("latin-1") for name, value in self._raw_headers
                  if len(name) == size and name.lower() == lowered]
        return ", ".join(values)

    @property
    def reusable(self) -> bool:
        """Whether another request may follow on this connection."""
        return (self.complete and not self._closed and self._error is None
                and not self._chunks and self._keep_alive)

    @property
    def closed(self) -> bool:
        """Closed by either side."""
        return self._closed or self._transport is None or self._transport.is_closing()

    def idle(self) -> None:
        """Back in the pool: no read is awaited, so no expiry is kept."""
        self._disarm()

    def close(self) -> None:
        """Drop the connection at once: the peer sees it and stops sending."""
        self._closed = True
        self._disarm()
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's TCP transports are not asyncio.Transport subclasses, so no isinstance.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; its callbacks below fill the answer."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponse("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # A callback's own refusal arrives wrapped in a "callback error".
            cause = exc.__cause__ or exc.__context__
            self._fail(cause if isinstance(cause, MalformedResponse)
                       else MalformedResponse(f"malformed HTTP response ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        """An answer without a length ends here; any other unfinished one is cut."""
        self._closed = True
        if self.head_done and not self.complete and self._delimited_by_close():
            self.complete = True
            self._wake()
            return
        if not self.complete:
            reason = f" ({type(exc).__name__})" if exc is not None else ""
            self._fail(ConnectionLost(f"connection closed before the response ended{reason}"))

    def _delimited_by_close(self) -> bool:
        return (not self._header(b"content-length")
                and "chunked" not in self._header(b"transfer-encoding").lower())

    def _fail(self, error: ConnectionError) -> None:
        if self._error is None:
            self._error = error
        if not self._closed:
            self.close()
        self._wake()

    # --- httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header line, kept raw: most answers never need their headers decoded."""
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            raise MalformedResponse(f"response head over {MAX_HEAD_BYTES} bytes")
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        """The head is in (an informational 1xx head is skipped)."""
        status = self._parser.get_status_code()
        if status < 200:
            self._raw_headers = []
            self._head_bytes = 0
            return
        encoding = self._header(b"content-encoding").strip().lower()
        if encoding and encoding != "identity":
            wbits = _INFLATE_WBITS.get(encoding)
            if wbits is None:
                raise MalformedResponse(f"unsupported content-encoding {encoding!r}")
            self._inflate = zlib.decompressobj(wbits)
        self.status = status  # the head is in (head_done) only once it was accepted
        self._wake()

    def on_body(self, body: bytes) -> None:
        """A piece of the body, inflated when the answer was compressed."""
        if self._inflate is not None:
            try:
                body = self._inflate.decompress(body)
            except zlib.error as exc:
                raise MalformedResponse(f"corrupt compressed body ({exc})") from None
        if not body:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > self._pause_at and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        """The answer ended (an informational 1xx answer is not the answer)."""
        if not self.head_done:
            return
        if self._inflate is not None:
            rest = self._inflate.flush()
            if rest:
                self._chunks.append(rest)
        # Asked here: the parser forgets the answer's keep-alive state once it returns.
        self._keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._wake()
