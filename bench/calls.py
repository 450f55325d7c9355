"""The calls a load generator makes: through the router over gRPC, or straight to the mock.

Each call returns its time to first token (streams) or None, and raises on failure; the
direct calls send the body the router's OpenAI connector sends, so the two compare.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import grpc.aio

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc

Call = Callable[[int], Awaitable[float | None]]
"""One call by worker `i`: its time to first token in seconds (streams) or None."""

PROMPT = "Summarise the attached notes in one sentence."


class NoEndError(Exception):
    """A stream ended without its final message."""


def classify(error: BaseException) -> str:
    """A short label for an error, for the report's error counts."""
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name
    return type(error).__name__


class GrpcCalls:
    """Chat, StreamChat and Route through the router over `channels` HTTP/2 connections."""

    def __init__(self, target: str, channels: int, model: str, deadline_s: float) -> None:
        # A local subchannel pool gives every channel its own TCP connection, so the kernel
        # spreads them across `serve --workers N` processes (SO_REUSEPORT hashes per connection).
        options = [("grpc.use_local_subchannel_pool", 1)]
        self._channels = [grpc.aio.insecure_channel(target, options=options)
                          for _ in range(max(1, channels))]
        # The generated stubs are typed for the sync API; on aio channels calls are awaitable.
        self._stubs: list[Any] = [router_pb2_grpc.RouterServiceStub(c) for c in self._channels]
        self._deadline_s = deadline_s
        message = pb.ChatMessage(role=pb.ROLE_USER, content=PROMPT)
        routing = pb.RoutingOptions(model=model)
        self._chat = pb.ChatRequest(messages=[message], routing=routing)
        self._stream = pb.StreamChatRequest(messages=[message], routing=routing)
        self._route = pb.RouteRequest(messages=[message], routing=routing)
        self.opened = 0
        self.open_peak = 0
        # Streams that opened or failed so far, and the event set once `expected` did.
        self.settled = 0
        self.expected = 0
        self.all_settled = asyncio.Event()

    def settle(self) -> None:
        """One stream opened or failed before opening."""
        self.settled += 1
        if self.expected and self.settled >= self.expected:
            self.all_settled.set()

    def _stub(self, worker: int) -> Any:
        return self._stubs[worker % len(self._stubs)]

    async def chat(self, worker: int) -> float | None:
        """A unary Chat."""
        await self._stub(worker).Chat(self._chat, timeout=self._deadline_s)
        return None

    async def route(self, worker: int) -> float | None:
        """A Route decision."""
        await self._stub(worker).Route(self._route, timeout=self._deadline_s)
        return None

    async def stream(self, worker: int) -> float | None:
        """A StreamChat read to its end; returns the time to the first delta."""
        started = time.perf_counter()
        ttft: float | None = None
        ended = False
        call = self._stub(worker).StreamChat(self._stream, timeout=self._deadline_s)
        counted = False
        try:
            async for message in call:
                if not counted:  # the stream is open once its first message arrived
                    counted = True
                    self.opened += 1
                    self.open_peak = max(self.open_peak, self.opened)
                    self.settle()
                kind = message.WhichOneof("event")
                if kind == "delta" and ttft is None:
                    ttft = time.perf_counter() - started
                ended = kind == "end"
        finally:
            if counted:
                self.opened -= 1
            else:
                self.settle()
        if not ended:
            raise NoEndError("the stream ended without its final message")
        return ttft

    async def aclose(self) -> None:
        """Close every channel."""
        for channel in self._channels:
            await channel.close(None)


class DirectCalls:
    """The same requests straight to the mock upstream with aiohttp (the baseline)."""

    def __init__(self, url: str, concurrency: int, model: str) -> None:
        self._url = url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, concurrency)),
            timeout=aiohttp.ClientTimeout(total=60))
        messages = [{"role": "user", "content": PROMPT}]
        self._chat = json.dumps({"model": model, "messages": messages},
                                separators=(",", ":")).encode()
        self._stream = json.dumps({"model": model, "messages": messages, "stream": True,
                                   "stream_options": {"include_usage": True}},
                                  separators=(",", ":")).encode()
        self._headers = {"Content-Type": "application/json"}

    async def chat(self, worker: int) -> float | None:
        """A unary completion."""
        async with self._session.post(self._url, data=self._chat,
                                      headers=self._headers) as response:
            await response.read()
            response.raise_for_status()
        return None

    async def stream(self, worker: int) -> float | None:
        """A streamed completion read to its end; returns the time to the first content."""
        started = time.perf_counter()
        ttft: float | None = None
        async with self._session.post(self._url, data=self._stream,
                                      headers=self._headers) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_any():
                if ttft is None and b'"content"' in chunk:
                    ttft = time.perf_counter() - started
        return ttft

    async def aclose(self) -> None:
        """Close the session."""
        await self._session.close()
