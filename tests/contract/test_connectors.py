"""One suite, every connector: the shared behaviours the router relies on.

HTTP connectors run against their protocol's real fake upstream, the command connector
against a small Python agent, the mock as it is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from provider_router.connectors.base import Connector
from provider_router.connectors.factory import availability, create_connector
from provider_router.domain import (
    FinishReason,
    MockOptions,
    ProviderKind,
    ProviderSpec,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolDefinition,
)
from provider_router.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from provider_router.resilience.deadline import Deadline
from tests.fakes.base import FakeUpstream, Fault, Script
from tests.fakes.harness import (
    FAKES,
    KEY,
    MODELS,
    command_spec,
    http_spec,
    mock_spec,
    request,
    settings,
)

KINDS = tuple(ProviderKind)
PROMPT = "Say hello"


@dataclass
class Subject:
    """A connector under test, and how to make it fail."""

    kind: ProviderKind
    spec: ProviderSpec
    connector: Connector
    fake: FakeUpstream | None

    @property
    def model(self) -> str:
        """The model to ask for."""
        return MODELS[self.kind]

    def failing(self) -> Connector:
        """A connector of the same kind whose next call fails with a server error."""
        if self.fake is not None:
            self.fake.fail(Fault(status=500, times=2))
            return self.connector
        if self.kind is ProviderKind.MOCK:
            return create_connector(replace(self.spec, mock=MockOptions(fail_status=500)),
                                    settings())
        return create_connector(command_spec("fail"), settings())


@pytest.fixture(params=KINDS, ids=lambda k: k.value)
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    """Each connector kind, ready to call."""
    kind: ProviderKind = request.param
    fake: FakeUpstream | None = None
    if kind in FAKES:
        compatible = kind is ProviderKind.OPENAI_COMPATIBLE
        fake = await FAKES[kind](required_key=None if compatible else KEY).start()
        spec = (http_spec(kind, fake, api_key_env="", headers={"HTTP-Referer": "https://t"})
                if compatible else http_spec(kind, fake))
    elif kind is ProviderKind.COMMAND:
        spec = command_spec("stream")
    else:
        spec = mock_spec(chunk_count=3)
    connector = create_connector(spec, settings())
    yield Subject(kind, spec, connector, fake)
    await connector.aclose()
    if fake is not None:
        await fake.close()


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


def expected_text(subject: Subject) -> str:
    if subject.kind is ProviderKind.MOCK:
        return f"[mock] {PROMPT}"
    if subject.kind is ProviderKind.COMMAND:
        return f"echo: {PROMPT} "
    return "Hello, world!"


async def test_available(subject: Subject) -> None:
    assert availability(subject.spec, settings().env) == (True, "")


async def test_chat_returns_text_usage_and_finish_reason(subject: Subject) -> None:
    result = await subject.connector.chat(request(PROMPT, model=subject.model),
                                          Deadline.after(10))
    assert result.text == expected_text(subject)
    assert result.finish_reason is FinishReason.STOP
    assert result.model
    usage = result.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # Only the mock estimates; the fakes and the agent report their own counts.
    assert usage.estimated is (subject.kind is ProviderKind.MOCK)


async def test_stream_yields_deltas_then_one_finish(subject: Subject) -> None:
    events = await collect(subject.connector.stream(request(PROMPT, model=subject.model),
                                                    Deadline.after(10)))
    finishes = [e for e in events if isinstance(e, StreamFinish)]
    assert len(finishes) == 1 and events[-1] is finishes[0]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 2  # really incremental, not one buffered blob
    assert "".join(d.text for d in deltas) == expected_text(subject)
    assert finishes[0].finish_reason is FinishReason.STOP
    assert finishes[0].usage.total_tokens > 0


# Command-line agents run their own tools: tool calling is not part of their contract.
TOOL_KINDS = tuple(k for k in KINDS if k is not ProviderKind.COMMAND)


@pytest.mark.parametrize("subject", TOOL_KINDS, ids=lambda k: k.value, indirect=True)
async def test_stream_and_chat_agree_on_tool_calls(subject: Subject) -> None:
    if subject.fake is not None:
        subject.fake.script = Script(chunks=(), tool_calls=(("get_weather", '{"city": "Paris"}'),))
    tools = (ToolDefinition("get_weather", "Weather", {"type": "object"}),)
    req = request(PROMPT, model=subject.model, tools=tools,
                  tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    result = await subject.connector.chat(req, Deadline.after(10))
    events = await collect(subject.connector.stream(req, Deadline.after(10)))
    assert result.finish_reason is FinishReason.TOOL_CALLS
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    assert result.tool_calls[0].id
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assembled = ToolCall(fragments[0].id, fragments[0].name,
                         "".join(f.arguments_fragment for f in fragments))
    assert (assembled.name, _norm(assembled.arguments_json)) == (
        "get_weather", _norm(result.tool_calls[0].arguments_json))
    final = events[-1]
    assert isinstance(final, StreamFinish) and final.finish_reason is FinishReason.TOOL_CALLS


def _norm(arguments: str) -> object:
    return json.loads(arguments)


async def test_probe_ok(subject: Subject) -> None:
    probe = await subject.connector.probe()
    assert probe.ok, probe.detail
    if subject.fake is not None:
        assert not subject.fake.chat_requests()  # a probe spends no tokens


async def test_failures_are_provider_errors(subject: Subject) -> None:
    connector = subject.failing()
    try:
        with pytest.raises(ProviderError) as caught:
            await connector.chat(request(PROMPT, model=subject.model), Deadline.after(10))
        assert caught.value.retryable and not caught.value.caller_error
        with pytest.raises(ProviderError):
            await collect(connector.stream(request(PROMPT, model=subject.model),
                                           Deadline.after(10)))
    finally:
        if connector is not subject.connector:
            await connector.aclose()


async def test_spent_deadline_is_a_timeout(subject: Subject) -> None:
    with pytest.raises(ProviderTimeoutError):
        await subject.connector.chat(request(PROMPT, model=subject.model), Deadline.after(0))
    with pytest.raises(ProviderTimeoutError):
        await collect(subject.connector.stream(request(PROMPT, model=subject.model),
                                               Deadline.after(0)))


async def test_cancellation_propagates_unchanged(subject: Subject) -> None:
    connector = subject.connector
    if subject.fake is not None:
        subject.fake.fail(Fault(headers_delay=5))
    else:  # a slow variant of the same kind
        connector = create_connector(command_spec("silent") if subject.kind is ProviderKind.COMMAND
                                     else mock_spec(latency=5), settings())
    task = asyncio.create_task(connector.chat(request(PROMPT, model=subject.model),
                                              Deadline.after(30)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await connector.aclose()


async def test_aclose_is_idempotent(subject: Subject) -> None:
    await subject.connector.chat(request(PROMPT, model=subject.model), Deadline.after(10))
    await subject.connector.aclose()
    await subject.connector.aclose()
    with pytest.raises(ProviderUnavailableError):
        await subject.connector.chat(request(PROMPT, model=subject.model), Deadline.after(10))
