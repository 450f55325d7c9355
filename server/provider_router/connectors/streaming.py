"""Shared streaming machinery: framing decoders, per-stream state, usage estimates.

A provider module supplies a `StreamState` subclass that turns one decoded chunk into
domain events; `SseDecoder` / `NdjsonDecoder` handle the framing; connectors/http.py
drives the socket. Finishing is decided here, once: a stream may finish cleanly only if
the provider sent its terminator or at least its finish reason.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from provider_router.connectors.ndjson import NdjsonOverflowError, NdjsonSplitter
from provider_router.connectors.payload import parse_json
from provider_router.connectors.sse import SseEvent, SseOverflowError, SseParser
from provider_router.domain import (
    ChatResult,
    FinishReason,
    JsonObject,
    ProviderRequest,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from provider_router.errors import ProviderProtocolError
from provider_router.tokens import estimate_prompt_tokens, estimate_text_tokens

log = logging.getLogger(__name__)


def estimate_usage(request: ProviderRequest, completion_text: str) -> Usage:
    """Usage estimated from text, flagged as such, for providers that report none."""
    prompt = estimate_prompt_tokens(request.chat.messages)
    completion = estimate_text_tokens(completion_text)
    return Usage(prompt, completion, prompt + completion, estimated=True)


class StreamState:
    """What one stream has seen so far; provider subclasses implement `on_chunk`."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        self.provider = provider
        self.request = request
        self.model = request.model
        self.done = False
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.malformed = 0
        self._produced: list[str] = []

    def on_chunk(self, event: str, data: str) -> list[StreamEvent]:
        """Turn one framed chunk (SSE event name and data, or an NDJSON line) into events."""
        raise NotImplementedError

    def decode(self, data: str) -> JsonObject | None:
        """The chunk's JSON object, or None (logged and counted) when it is malformed."""
        try:
            value = parse_json(data)
        except ValueError:
            value = None
        if type(value) is dict or isinstance(value, Mapping):
            return value
        self.malformed += 1
        log.warning("%s: skipped a malformed stream chunk (%d so far): %.80r",
                    self.provider, self.malformed, data)
        return None

    def text(self, fragment: str) -> list[StreamEvent]:
        """A text delta (none for an empty fragment), remembered for usage estimates."""
        if not fragment:
            return []
        self._produced.append(fragment)
        return [TextDelta(fragment)]

    def tool(self, index: int, id: str = "", name: str = "",
             arguments: str = "") -> list[StreamEvent]:
        """A tool-call delta (none if it carries nothing), remembered for usage estimates."""
        if not (id or name or arguments):
            return []
        self._produced.append(name + arguments)
        return [ToolCallDelta(index, id, name, arguments)]

    def finish(self) -> StreamFinish | None:
        """The final event if the provider finished; None means the stream was cut."""
        if self.finish_reason is None:
            return None
        usage = self.usage or estimate_usage(self.request, "".join(self._produced))
        return StreamFinish(self.finish_reason, usage, self.model)


class StreamDecoder(Protocol):
    """Bytes in, domain events out; what connectors/http.py drives."""

    @property
    def done(self) -> bool:
        """Whether the provider's terminator arrived (stop reading)."""
        ...

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Events completed by a chunk of the body."""
        ...

    def close(self) -> list[StreamEvent]:
        """Events completed by the end of the body."""
        ...

    def finish(self) -> StreamFinish | None:
        """The final event, or None if the stream ended before the provider finished."""
        ...


class SseDecoder:
    """A StreamDecoder for Server-Sent Events bodies."""

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self._parser = SseParser()

    @property
    def done(self) -> bool:
        """Whether the provider's terminator arrived."""
        return self.state.done

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Events completed by a chunk of the body."""
        try:
            frames = self._parser.feed(chunk)
        except SseOverflowError as exc:
            raise ProviderProtocolError(self.state.provider, str(exc)) from None
        return self._events(frames)

    def close(self) -> list[StreamEvent]:
        """Events completed by the end of the body."""
        return self._events(self._parser.close())

    def _events(self, frames: list[SseEvent]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in frames:
            if self.state.done:
                break
            events.extend(self.state.on_chunk(frame.event, frame.data))
        return events

    def finish(self) -> StreamFinish | None:
        """The final event, or None if the stream was cut."""
        return self.state.finish()


class NdjsonDecoder:
    """A StreamDecoder for newline-delimited JSON bodies."""

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self._splitter = NdjsonSplitter()

    @property
    def done(self) -> bool:
        """Whether the provider's final line arrived."""
        return self.state.done

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Events completed by a chunk of the body."""
        try:
            lines = self._splitter.feed(chunk)
        except NdjsonOverflowError as exc:
            raise ProviderProtocolError(self.state.provider, str(exc)) from None
        return self._events(lines)

    def close(self) -> list[StreamEvent]:
        """Events completed by the end of the body."""
        return self._events(self._splitter.close())

    def _events(self, lines: list[str]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for line in lines:
            if self.state.done:
                break
            events.extend(self.state.on_chunk("message", line))
        return events

    def finish(self) -> StreamFinish | None:
        """The final event, or None if the stream was cut."""
        return self.state.finish()


@dataclass(slots=True)
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


async def collect(provider: str, events: AsyncIterator[StreamEvent], model: str) -> ChatResult:
    """A whole ChatResult from a stream (for connectors whose unary call is a stream)."""
    text: list[str] = []
    calls: dict[int, _PendingCall] = {}
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            pending = calls.setdefault(event.index, _PendingCall())
            pending.id = pending.id or event.id
            pending.name = pending.name or event.name
            pending.arguments.append(event.arguments_fragment)
        else:
            tool_calls = tuple(ToolCall(c.id, c.name, "".join(c.arguments))
                               for _, c in sorted(calls.items()))
            return ChatResult(event.model or model, "".join(text), event.finish_reason,
                              event.usage, tool_calls)
    # Connector streams end with StreamFinish or raise; this guards a broken invariant.
    raise ProviderProtocolError(provider, "stream ended without a finish event")
