"""The mock provider: deterministic, offline, failure modes through the OpenAI table."""

from __future__ import annotations

import socket

import pytest

from provider_router.connectors import mock, openai
from provider_router.domain import (
    ChatMessage,
    FinishReason,
    Role,
    StreamFinish,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolDefinition,
)
from provider_router.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from provider_router.resilience.deadline import Deadline
from tests.fakes.harness import mock_spec, request, settings
from tests.unit.connectors.conftest import MakeConnector


def test_split_chunks() -> None:
    assert mock.split_chunks("abcdefghij", 4) == ["abc", "def", "gh", "ij"]
    assert mock.split_chunks("ab", 5) == ["a", "b"]
    assert mock.split_chunks("abc", 0) == ["abc"]


async def test_echo_is_deterministic_and_marked(connect: MakeConnector) -> None:
    connector = connect(mock_spec(chunk_count=3))
    messages = (ChatMessage(Role.USER, "first"), ChatMessage(Role.ASSISTANT, "x"),
                ChatMessage(Role.USER, "echo me"))
    runs = [[e async for e in connector.stream(request(messages=messages, model="mm"),
                                               Deadline.after(5))] for _ in range(2)]
    assert runs[0] == runs[1]
    deltas = [e.text for e in runs[0] if isinstance(e, TextDelta)]
    assert deltas == ["[mock", "] ech", "o me"]
    final = runs[0][-1]
    assert isinstance(final, StreamFinish)
    assert final.finish_reason is FinishReason.STOP and final.usage.estimated
    assert final.model == "mm"
    result = await connector.chat(request(messages=messages, model="mm"), Deadline.after(5))
    assert result.text == "[mock] echo me"
    assert result.usage == final.usage


async def test_configured_reply(connect: MakeConnector) -> None:
    result = await connect(mock_spec(reply="fixed answer")).chat(request("ignored"),
                                                                  Deadline.after(5))
    assert result.text == "[mock] fixed answer"


async def test_a_prefill_of_its_own_answer_is_continued_not_answered_again(
        connect: MakeConnector) -> None:
    connector = connect(mock_spec(reply="Hello, world!", chunk_count=2))
    messages = (ChatMessage(Role.USER, "hi"), ChatMessage(Role.ASSISTANT, "[mock] Hello"))
    events = [e async for e in connector.stream(request(messages=messages), Deadline.after(5))]
    assert [e.text for e in events if isinstance(e, TextDelta)] == [", wo", "rld!"]
    assert isinstance(events[-1], StreamFinish)
    assert mock.continuation("[mock] ab", request(messages=(
        ChatMessage(Role.USER, "hi"), ChatMessage(Role.ASSISTANT, "[mock] ab"))).chat) == ""
    # A prefill it does not start with, or none at all: the whole answer.
    other = (ChatMessage(Role.USER, "hi"), ChatMessage(Role.ASSISTANT, "Bonjour"))
    assert mock.continuation("[mock] x", request(messages=other).chat) == "[mock] x"
    assert mock.continuation("[mock] x", request("hi").chat) == "[mock] x"


async def test_a_prefill_of_the_whole_answer_finishes_without_deltas(
        connect: MakeConnector) -> None:
    connector = connect(mock_spec(reply="done"))
    messages = (ChatMessage(Role.USER, "hi"), ChatMessage(Role.ASSISTANT, "[mock] done"))
    events = [e async for e in connector.stream(request(messages=messages), Deadline.after(5))]
    assert len(events) == 1 and isinstance(events[0], StreamFinish)


@pytest.mark.parametrize(("status", "cls"), [
    (429, ProviderRateLimitError), (500, ProviderServerError), (503, ProviderServerError),
    (401, ProviderAuthError)])
async def test_fail_status_maps_through_the_openai_table(connect: MakeConnector, status: int,
                                                         cls: type) -> None:
    connector = connect(mock_spec(fail_status=status))
    with pytest.raises(ProviderError) as caught:
        await connector.chat(request(), Deadline.after(5))
    assert type(caught.value) is cls and caught.value.status_code == status
    with pytest.raises(cls):
        await anext(aiter(connector.stream(request(), Deadline.after(5))))
    assert (await connector.probe()).ok


def test_context_length_body_maps_too() -> None:
    error = openai.map_error("m", 400, '{"error": {"code": "context_length_exceeded"}}', {})
    assert isinstance(error, ContextLengthError)


async def test_latency_per_chunk_honours_phase_timeouts(connect: MakeConnector) -> None:
    connector = connect(mock_spec(latency=0.2, chunk_count=3), settings(first_token=0.1))
    with pytest.raises(ProviderTimeoutError) as caught:
        await anext(aiter(connector.stream(request(), Deadline.after(5))))
    assert caught.value.phase == "first_token"
    slow = connect(mock_spec(latency=0.05, chunk_count=3))
    with pytest.raises(ProviderTimeoutError) as caught:
        await slow.chat(request(), Deadline.after(0.1))
    assert caught.value.phase == "total"


async def test_forced_tool_call(connect: MakeConnector) -> None:
    tools = (ToolDefinition("lookup"), ToolDefinition("other"))
    connector = connect(mock_spec())
    events = [e async for e in connector.stream(
        request(tools=tools, tool_choice=ToolChoice(ToolChoiceMode.NAMED, "other")),
        Deadline.after(5))]
    assert events[0] == ToolCallDelta(0, "call_mock_0", "other", "{}")
    result = await connector.chat(request(tools=tools,
                                          tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)),
                                  Deadline.after(5))
    assert result.tool_calls == (ToolCall("call_mock_0", "lookup", "{}"),)
    assert result.finish_reason is FinishReason.TOOL_CALLS


async def test_never_touches_the_network(connect: MakeConnector,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the mock opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = await connect(mock_spec()).chat(request("offline"), Deadline.after(5))
    assert result.text == "[mock] offline"


async def test_closed_mock_is_unavailable(connect: MakeConnector) -> None:
    connector = connect(mock_spec())
    await connector.aclose()
    await connector.aclose()
    with pytest.raises(ProviderUnavailableError):
        await connector.chat(request(), Deadline.after(5))


async def test_unary_chat_is_bounded_by_total_only(connect: MakeConnector) -> None:
    # Each chunk takes longer than the idle timeout, which applies to streams only.
    connector = connect(mock_spec(latency=0.15, chunk_count=3),
                        settings(first_token=0.1, idle=0.1))
    result = await connector.chat(request("slow but fine"), Deadline.after(5))
    assert result.text == "[mock] slow but fine"
