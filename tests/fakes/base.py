"""A real HTTP fake upstream on 127.0.0.1, with scripted answers and injected faults.

Each protocol subclass says how to frame events (SSE or NDJSON) and what its bodies look
like; this base class serves them through aiohttp.web and applies faults: error statuses
with Retry-After headers, delays, stalls, cut streams, TCP resets, malformed chunks, a
missing terminator, byte-by-byte or random splits across socket writes, CRLF line ends,
SSE comments and multi-line data fields. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

Json = dict[str, Any]
_FOREVER = 10**9


@dataclass(frozen=True)
class Script:
    """What the fake model answers."""

    chunks: tuple[str, ...] = ("Hello", ", ", "world", "!")
    tool_calls: tuple[tuple[str, str], ...] = ()  # (name, arguments JSON)
    prompt_tokens: int = 12
    completion_tokens: int = 5
    model: str = ""  # reported model; empty means echo the requested one
    finish: str = ""  # provider-native finish reason; empty means the natural one
    include_usage: bool = True

    @property
    def text(self) -> str:
        """The whole answer text."""
        return "".join(self.chunks)


@dataclass(frozen=True)
class Fault:
    """How the next request(s) misbehave."""

    status: int = 0
    code: str = ""  # provider error code/type/status in the error body
    message: str = "fake failure"
    body: str | None = None  # raw error body, overriding the protocol's shape
    headers: dict[str, str] = field(default_factory=dict)
    headers_delay: float = 0.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    stall_after: int | None = None  # stop after N frames, keep the socket open
    # End the body cleanly after N frames / abort the TCP connection after N frames; a unary
    # answer stops halfway through its JSON body instead.
    cut_after: int | None = None
    reset_after: int | None = None
    reset_before_headers: bool = False
    malformed_at: int | None = None  # a broken JSON frame before frame N
    error_event_at: int | None = None  # the protocol's in-stream error before frame N
    omit_terminator: bool = False
    split: str = ""  # "bytes" or "random"
    crlf: bool = False
    comments: bool = False  # SSE comment lines between frames
    multiline: bool = False  # SSE data split over several data: lines
    # Say nothing for this many seconds, then abort the TCP connection (no byte sent).
    close_after: float | None = None
    times: int = 1  # how many requests this fault applies to
    model: str = ""  # only requests for this model (empty: any); others pass it by


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: Json | None
    peer_port: int = 0  # the client's port: equal ports mean a reused connection
    at: float = 0.0  # time.monotonic() when the request arrived


@dataclass(frozen=True)
class Frame:
    """One stream event before framing: an SSE event name (or None) and its data."""

    data: str
    event: str | None = None


class FakeUpstream:
    """Base of the protocol fakes; start() binds port 0 on loopback."""

    framing = "sse"  # or "ndjson"
    content_type = "text/event-stream"
    prefix = ""  # path prefix that belongs to the base URL, e.g. "/v1"
    always_crlf = False  # frame with CRLF even when the fault does not ask for it

    def __init__(self, required_key: str | None = None) -> None:
        self.script = Script()
        self.required_key = required_key
        self.requests: list[Recorded] = []
        self.disconnected = asyncio.Event()
        self.frames_sent = 0
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # --- protocol hooks -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Register the protocol's routes."""
        raise NotImplementedError

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the required key; a Bearer key unless the protocol
        says otherwise (OpenAI, and Ollama behind a proxy)."""
        if self.required_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.required_key}"

    def error_body(self, status: int, code: str, message: str) -> Json:
        """The protocol's error body."""
        raise NotImplementedError

    def stream_error(self) -> Frame:
        """The protocol's in-stream error frame."""
        raise NotImplementedError

    def frames(self, body: Json, model: str) -> tuple[list[Frame], Frame | None]:
        """The stream's frames and its terminator (None if the protocol has none)."""
        raise NotImplementedError

    def unary(self, body: Json, model: str) -> Json:
        """The non-streaming response body."""
        raise NotImplementedError

    # --- control --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL a connector's spec.base_url should hold."""
        return f"http://127.0.0.1:{self._port}{self.prefix}"

    def fail(self, fault: Fault) -> None:
        """Queue a fault for the next request(s)."""
        self._faults.append(fault)

    def down(self, fault: Fault | None = None) -> None:
        """Apply `fault` (default: HTTP 503) to every request until `recover()`."""
        self._faults.clear()
        self._faults.append(replace(fault or Fault(status=503), times=_FOREVER))

    def recover(self) -> None:
        """Drop every queued fault: from now on the fake answers normally."""
        self._faults.clear()

    def chat_requests(self) -> list[Recorded]:
        """The recorded chat (non-probe) requests."""
        return [r for r in self.requests if r.method == "POST"]

    async def start(self) -> FakeUpstream:
        """Serve on a free loopback port."""
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- serving --------------------------------------------------------------------------

    async def record(self, request: web.Request) -> Json | None:
        """Record a request and return its JSON body."""
        raw = await request.read()
        body = json.loads(raw) if raw else None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Recorded(request.method, request.path, request.query_string,
                                      {k.lower(): v for k, v in request.headers.items()}, body,
                                      peer[1] if peer else 0, time.monotonic()))
        return body

    def next_fault(self, model: str = "") -> Fault:
        """The fault for this request: the first queued one for its model, or any model (a
        no-op fault when none applies)."""
        for index, fault in enumerate(self._faults):
            if fault.model and fault.model != model:
                continue
            if fault.times <= 1:
                del self._faults[index]
            else:
                self._faults[index] = replace(fault, times=fault.times - 1)
            return fault
        return Fault()

    def down_model(self, model: str, fault: Fault | None = None) -> None:
        """Apply `fault` (default: HTTP 503) to every request for `model` until
        `recover_model(model)`; other models keep their own faults."""
        self.recover_model(model)
        self._faults.append(replace(fault or Fault(status=503), times=_FOREVER, model=model))

    def recover_model(self, model: str) -> None:
        """Drop the queued faults of one model."""
        self._faults = deque(f for f in self._faults if f.model != model)

    def requests_for(self, model: str) -> list[Recorded]:
        """The recorded chat requests for one model."""
        return [r for r in self.chat_requests() if r.body and r.body.get("model") == model]

    async def serve_chat(self, request: web.Request, body: Json, model: str,
                         stream: bool) -> web.StreamResponse:
        """Answer a chat request, applying this request's fault."""
        fault = self.next_fault(model)
        if fault.close_after is not None:
            await self._pause(request, fault.close_after)
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if fault.reset_before_headers:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if not self.authorized(request):
            return self._json(401, self.error_body(401, "authentication_error", "bad key"), {})
        await self._pause(request, fault.headers_delay)
        if fault.status:
            payload = (fault.body if fault.body is not None else
                       json.dumps(self.error_body(fault.status, fault.code, fault.message)))
            return web.Response(status=fault.status, text=payload, headers=fault.headers,
                                content_type="application/json")
        if not stream:
            if fault.cut_after is not None or fault.reset_after is not None:
                return await self._broken_unary(request, self.unary(body, model), fault)
            return self._json(200, self.unary(body, model), fault.headers)
        return await self._stream(request, body, model, fault)

    def _json(self, status: int, payload: Json, headers: dict[str, str]) -> web.Response:
        return web.json_response(payload, status=status, headers=headers)

    async def _broken_unary(self, request: web.Request, payload: Json,
                            fault: Fault) -> web.StreamResponse:
        """A 200 whose JSON body stops halfway: a clean end (cut) or a TCP reset."""
        data = json.dumps(payload).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if fault.reset_after is not None:
            response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        if fault.reset_after is not None:
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _stream(self, request: web.Request, body: Json, model: str,
                      fault: Fault) -> web.StreamResponse:
        frames, terminator = self.frames(body, model)
        frames = self._with_faults(frames, terminator, fault)
        response = web.StreamResponse(headers={"Content-Type": self.content_type})
        await response.prepare(request)
        try:
            await self._pause(request, fault.first_chunk_delay)
            for index, frame in enumerate(frames):
                if fault.cut_after == index:
                    break  # a clean end of the body, minus the rest of the answer
                if fault.reset_after == index:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if fault.stall_after == index:
                    await self._pause(request, 3600.0)
                await self._write(response, self.encode(frame, fault), fault)
                self.frames_sent += 1
                await self._pause(request, fault.chunk_delay)
            await response.write_eof()
        except (ConnectionError, _Disconnected):
            self.disconnected.set()
        return response

    def _with_faults(self, frames: list[Frame], terminator: Frame | None,
                     fault: Fault) -> list[Frame]:
        out = list(frames)
        if fault.error_event_at is not None:
            out.insert(fault.error_event_at, self.stream_error())
        if fault.malformed_at is not None:
            out.insert(fault.malformed_at, Frame('{"broken": '))
        if terminator is not None and not fault.omit_terminator:
            out.append(terminator)
        return out

    def encode(self, frame: Frame, fault: Fault) -> bytes:
        """A frame as bytes on the wire."""
        newline = "\r\n" if fault.crlf or self.always_crlf else "\n"
        if self.framing == "ndjson":
            return (frame.data + newline).encode()
        lines: list[str] = []
        if fault.comments:
            lines.append(": keep-alive")
        if frame.event is not None:
            lines.append(f"event: {frame.event}")
        if fault.multiline and len(frame.data) > 2:
            middle = len(frame.data) // 2
            # A data field may span several lines; the parser joins them with "\n", which
            # JSON accepts as whitespace only between tokens, so split after a comma.
            cut = frame.data.find(",", middle)
            cut = middle if cut < 0 else cut + 1
            lines.append(f"data: {frame.data[:cut]}")
            lines.append(f"data:{frame.data[cut:]}")
        else:
            lines.append(f"data: {frame.data}")
        return (newline.join(lines) + newline + newline).encode()

    async def _write(self, response: web.StreamResponse, data: bytes, fault: Fault) -> None:
        if fault.split == "bytes":
            pieces = [data[i:i + 1] for i in range(len(data))]
        elif fault.split == "random":
            rng = random.Random(len(data))
            pieces, start = [], 0
            while start < len(data):
                end = start + rng.randint(1, 7)
                pieces.append(data[start:end])
                start = end
        else:
            pieces = [data]
        for piece in pieces:
            await response.write(piece)
            if len(pieces) > 1:
                await asyncio.sleep(0.0005)  # separate TCP segments, separate client reads

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep, noticing a client that hangs up meanwhile."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnected.set()
                raise _Disconnected
            await asyncio.sleep(min(0.01, until - loop.time()))


class _Disconnected(Exception):
    """The client hung up."""
