"""The built-in mock provider: deterministic, offline, and plainly marked as a mock.

It echoes the last user message (or `mock.reply`) prefixed with "[mock] ", split into
`mock.chunk_count` chunks with `mock.latency` seconds before each, honouring the same
phase timeouts and deadline as a real provider. `mock.fail_status` makes every call fail
the way an OpenAI-style provider answering that HTTP status would. When the caller
requires a tool (tool_choice required or named), it calls that tool with `{}`. Given a
final assistant message that its answer starts with (a prefill), it continues from there.
It never touches the network; usage is estimated.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from provider_router.connectors import openai
from provider_router.connectors.payload import dumps
from provider_router.connectors.settings import ConnectorSettings
from provider_router.connectors.streaming import collect, estimate_usage
from provider_router.connectors.timing import PhaseClock, PhaseTimeouts
from provider_router.domain import (
    ChatRequest,
    ChatResult,
    FinishReason,
    MockOptions,
    ProbeResult,
    ProviderRequest,
    ProviderSpec,
    Role,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCallDelta,
    ToolChoiceMode,
)
from provider_router.errors import ProviderUnavailableError
from provider_router.resilience.deadline import Deadline

MOCK_PREFIX = "[mock] "
"""Every mock answer starts with this, so nobody mistakes it for a real model."""


def reply_text(options: MockOptions, chat: ChatRequest) -> str:
    """The full mock answer for a request."""
    if options.reply:
        return MOCK_PREFIX + options.reply
    last_user = next((m.text() for m in reversed(chat.messages) if m.role is Role.USER), "")
    return MOCK_PREFIX + last_user


def continuation(reply: str, chat: ChatRequest) -> str:
    """What is left of `reply` after a final assistant message it starts with (a prefill):
    the mock continues its own answer as prefill-accepting APIs do, instead of answering
    again. Without such a prefill, the whole reply."""
    last = chat.messages[-1] if chat.messages else None
    if last is None or last.role is not Role.ASSISTANT:
        return reply
    prefill = last.text()
    return reply[len(prefill):] if prefill and reply.startswith(prefill) else reply


def split_chunks(reply: str, count: int) -> list[str]:
    """`reply` in `count` nearly equal, non-empty pieces (fewer if it is shorter)."""
    count = max(1, min(count, len(reply)))
    size, extra = divmod(len(reply), count)
    chunks: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        chunks.append(reply[start:end])
        start = end
    return chunks


def forced_tool(chat: ChatRequest) -> str:
    """The tool the caller requires the model to call, or ""."""
    choice = chat.tool_choice
    if not chat.tools or choice is None:
        return ""
    if choice.mode is ToolChoiceMode.NAMED:
        return choice.name
    return chat.tools[0].name if choice.mode is ToolChoiceMode.REQUIRED else ""


class MockConnector:
    """A deterministic fake provider for demos and tests."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        self.spec = spec
        self._options = spec.mock or MockOptions()
        self._timeouts = PhaseTimeouts.resolve(spec.timeouts, settings.default_timeouts)
        self._closed = False

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """Complete the request in one call (as long as the whole stream would take)."""
        return await collect(self.spec.name, self._events(request, deadline, streaming=False),
                             request.model)

    def stream(self, request: ProviderRequest,
               deadline: Deadline) -> AsyncGenerator[StreamEvent, None]:
        """Stream the mock answer chunk by chunk, then one StreamFinish.

        The event generator itself, not one wrapped around it (a layer costs a resumption
        per event); whoever iterates it closes it, as for the HTTP connectors."""
        return self._events(request, deadline, streaming=True)

    async def _events(self, request: ProviderRequest, deadline: Deadline, *,
                      streaming: bool) -> AsyncGenerator[StreamEvent, None]:
        if self._closed:
            raise ProviderUnavailableError(self.spec.name, "connector is closed")
        clock = PhaseClock(self.spec.name, self._timeouts, deadline, streaming=streaming)
        options = self._options
        if options.fail_status:
            await clock.sleep(options.latency)
            raise openai.map_error(self.spec.name, options.fail_status, _failure_body(
                options.fail_status), {})
        tool = forced_tool(request.chat)
        if tool:
            await clock.sleep(options.latency)
            yield ToolCallDelta(0, "call_mock_0", tool, dumps({}))
            yield self._finish(request, tool + "{}", FinishReason.TOOL_CALLS)
            return
        reply = continuation(reply_text(options, request.chat), request.chat)
        for chunk in split_chunks(reply, options.chunk_count) if reply else ():
            await clock.sleep(options.latency)
            clock.saw_delta()
            yield TextDelta(chunk)
        yield self._finish(request, reply, FinishReason.STOP)

    def _finish(self, request: ProviderRequest, produced: str,
                reason: FinishReason) -> StreamFinish:
        return StreamFinish(reason, estimate_usage(request, produced), request.model)

    async def probe(self) -> ProbeResult:
        """Always healthy: the mock has nothing to reach."""
        return ProbeResult(True, "mock provider")

    async def aclose(self) -> None:
        """Nothing to release; later calls fail as for any closed connector."""
        self._closed = True


def _failure_body(status: int) -> str:
    kinds = {400: "invalid_request_error", 401: "invalid_api_key", 429: "rate_limit_exceeded"}
    kind = kinds.get(status, "server_error")
    return dumps({"error": {"message": f"mock failure (HTTP {status})", "type": kind,
                            "code": kind}})
