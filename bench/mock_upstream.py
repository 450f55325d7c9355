"""A fast mock OpenAI-compatible upstream: a raw asyncio protocol, never the bottleneck.

HTTP/1.1 with keep-alive, spoken directly on the transport (no framework): the answers are
pre-built bytes, so one request costs a few tens of microseconds. The harness measures this
process's CPU in every run to prove it stays far from saturation.

Routes (`C` chunks, `D` milliseconds between chunks, both optional path prefixes):
    POST [/mock/C/D]/v1/chat/completions   JSON, or SSE when the body asks `"stream":true`
    GET  [/mock/C/D]/v1/models             the model list (what provider probes ask for)
    POST /tail/C/P/S/F/v1/chat/completions a heavy-tailed time to first byte: P percent of
                                           requests wait S ms before answering, the rest F ms
                                           (then C chunks without delay); drawn from one
                                           seeded generator, so a run is repeatable
    GET  /stats                            {"chat_requests": n, "cancelled": m}: chat
                                           requests seen, and those whose client hung up
                                           before the answer was complete (hedge losers)

Usage: python -m bench.mock_upstream --port 0 --ready-file /tmp/port   (prints the port)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

MODEL = "bench-model"
_CREATED = 1_700_000_000


@dataclass(frozen=True, slots=True)
class Shape:
    """How one answer is shaped: SSE content chunks and the delay between them."""

    chunks: int = 4
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Tail:
    """A heavy-tailed first byte: `slow_pct` percent of requests wait `slow_s`, the rest
    `fast_s`."""

    chunks: int
    slow_pct: float
    slow_s: float
    fast_s: float


def parse_tail(path: str) -> Tail | None:
    """The tail a path asks for: `/tail/<chunks>/<slow %>/<slow ms>/<fast ms>/v1/...`."""
    if not path.startswith("/tail/"):
        return None
    parts = path.split("/")
    try:
        return Tail(max(1, int(parts[2])), float(parts[3]), int(parts[4]) / 1000.0,
                    int(parts[5]) / 1000.0)
    except (IndexError, ValueError):
        return None


class Tally:
    """What the whole server saw (shared by its connections), and the tail's dice."""

    def __init__(self, seed: int = 14) -> None:
        self.chat_requests = 0
        self.cancelled = 0
        self.rng = random.Random(seed)

    def delay_s(self, tail: Tail) -> float:
        """This request's wait before its first byte."""
        return tail.slow_s if self.rng.random() * 100.0 < tail.slow_pct else tail.fast_s

    def as_json(self) -> bytes:
        """The /stats body."""
        return json.dumps({"chat_requests": self.chat_requests,
                           "cancelled": self.cancelled}).encode()


def parse_shape(path: str, default: Shape) -> Shape:
    """The shape a path asks for: `/mock/<chunks>/<delay ms>/v1/...`, else the default."""
    if not path.startswith("/mock/"):
        return default
    parts = path.split("/")
    try:
        return Shape(chunks=max(1, int(parts[2])), delay_s=max(0.0, int(parts[3]) / 1000.0))
    except (IndexError, ValueError):
        return default


def _frame(payload: dict[str, object]) -> bytes:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return _frame({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                   "created": _CREATED, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _response(status: str, content_type: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Answers:
    """Every byte the mock sends, built once."""

    def __init__(self) -> None:
        completion = {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": _CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": "Hello from the benchmark upstream."}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
        self.chat = _response("200 OK", "application/json",
                              json.dumps(completion, separators=(",", ":")).encode())
        models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        self.models = _response("200 OK", "application/json", json.dumps(models).encode())
        self.not_found = _response("404 Not Found", "application/json", b'{"error":"no route"}')
        self.stream_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.first = _chunk({"role": "assistant", "content": "tok "})
        self.delta = _chunk({"content": "tok "})
        usage = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}
        self.tail = (_chunk({}, "stop")
                     + _frame({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                               "created": _CREATED, "model": MODEL, "choices": [],
                               "usage": usage})
                     + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        self._streams: dict[int, bytes] = {}

    def whole_stream(self, chunks: int) -> bytes:
        """A complete undelayed SSE answer of `chunks` content chunks (cached per size)."""
        found = self._streams.get(chunks)
        if found is None:
            found = self.stream_head + self.first + self.delta * (chunks - 1) + self.tail
            self._streams[chunks] = found
        return found


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in order."""

    def __init__(self, answers: Answers, default: Shape, tally: Tally | None = None) -> None:
        self._answers = answers
        self._default = default
        self._tally = tally or Tally()
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._streaming: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports are not asyncio.Transport subclasses, but they quack alike.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop a delayed stream whose client went away."""
        if self._streaming is not None:
            self._streaming.cancel()
            self._streaming = None
            self._tally.cancelled += 1
        self._transport = None

    def data_received(self, data: bytes) -> None:
        """Buffer, then answer every complete request (unless a stream is in progress)."""
        self._buffer += data
        while self._streaming is None and self._one_request():
            pass

    def _one_request(self) -> bool:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(self._buffer[:head_end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(self._buffer) < end:
            return False
        body = bytes(self._buffer[head_end + 4:end])
        del self._buffer[:end]
        method, path = head.split(" ", 2)[:2]
        self._answer(method, path, body)
        return True

    def _answer(self, method: str, path: str, body: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        if method == "POST" and path.endswith("/chat/completions"):
            self._tally.chat_requests += 1
            stream = b'"stream":true' in body or b'"stream": true' in body
            tail = parse_tail(path)
            if tail is not None:
                self._delayed(tail, stream)
            elif stream:
                self._stream(parse_shape(path, self._default))
            else:
                transport.write(self._answers.chat)
        elif method == "GET" and path.endswith("/models"):
            transport.write(self._answers.models)
        elif method == "GET" and path == "/stats":
            transport.write(_response("200 OK", "application/json", self._tally.as_json()))
        else:
            transport.write(self._answers.not_found)

    def _stream(self, shape: Shape) -> None:
        transport = self._transport
        assert transport is not None
        if shape.delay_s <= 0:
            transport.write(self._answers.whole_stream(shape.chunks))
            return
        transport.write(self._answers.stream_head + self._answers.first)
        self._schedule(shape, shape.chunks - 1)

    def _delayed(self, tail: Tail, stream: bool) -> None:
        """Answer after the tail's wait; a client leaving meanwhile counts as cancelled."""
        loop = asyncio.get_running_loop()
        self._streaming = loop.call_later(self._tally.delay_s(tail), self._answer_late,
                                          tail, stream)

    def _answer_late(self, tail: Tail, stream: bool) -> None:
        transport = self._transport
        self._streaming = None
        if transport is None or transport.is_closing():
            return
        transport.write(self._answers.whole_stream(tail.chunks) if stream
                        else self._answers.chat)
        if self._buffer:  # a request that arrived meanwhile
            self.data_received(b"")

    def _schedule(self, shape: Shape, left: int) -> None:
        loop = asyncio.get_running_loop()
        self._streaming = loop.call_later(shape.delay_s, self._next_chunk, shape, left)

    def _next_chunk(self, shape: Shape, left: int) -> None:
        transport = self._transport
        self._streaming = None
        if transport is None or transport.is_closing():
            return
        if left > 0:
            transport.write(self._answers.delta)
            self._schedule(shape, left - 1)
            return
        transport.write(self._answers.tail)
        if self._buffer:  # a request that arrived while streaming
            self.data_received(b"")


def _write(path: Path, text: str) -> None:
    path.write_text(text)  # once at start-up, before any request: blocking is harmless


async def serve(host: str, port: int, default: Shape, ready_file: Path | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    answers = Answers()
    tally = Tally()
    server = await loop.create_server(lambda: UpstreamProtocol(answers, default, tally),
                                      host, port,
                                      backlog=8192, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if ready_file is not None:
        _write(ready_file, str(bound))
    print(bound, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    """Parse arguments and serve (with uvloop when installed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=4, help="SSE content chunks by default")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay between chunks")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="write the bound port here once listening")
    args = parser.parse_args()
    shape = Shape(max(1, args.chunks), args.delay_ms / 1000.0)
    coro = serve(args.host, args.port, shape, args.ready_file)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
