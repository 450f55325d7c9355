"""Anthropic Messages translation: request shapes, responses, stream events, errors."""

from __future__ import annotations

import json

import pytest

from provider_router.connectors import anthropic
from provider_router.connectors.streaming import SseDecoder
from provider_router.domain import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    ImagePart,
    ProviderKind,
    ResponseFormat,
    ResponseFormatType,
    Role,
    StreamFinish,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolDefinition,
    Usage,
)
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
    ProviderUnavailableError,
)
from tests.fakes.harness import KEY, drain, fixture, http_spec, request, settings
from tests.unit.connectors.conftest import body_builder

SPEC = http_spec(ProviderKind.ANTHROPIC, None, base_url="https://api.anthropic.example")


body_of = body_builder(anthropic.to_request, SPEC)


def test_url_headers_and_required_max_tokens() -> None:
    call = anthropic.to_request(request("hi", model="claude-x"), SPEC, settings())
    assert call.url == "https://api.anthropic.example/v1/messages"
    assert call.headers["x-api-key"] == KEY
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in call.headers
    assert call.body == {"model": "claude-x", "max_tokens": 4096,
                         "messages": [{"role": "user",
                                       "content": [{"type": "text", "text": "hi"}]}]}


def test_missing_key_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailableError):
        anthropic.to_request(request(), SPEC, settings(env={}))


def test_params_and_stream() -> None:
    params = GenerationParams(temperature=0.5, top_p=0.8, max_tokens=99, stop=("X",), seed=3)
    body = body_of(request(params=params), stream=True)
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop_sequences"],
            body["stream"]) == (99, 0.5, 0.8, ["X"], True)
    assert "seed" not in body  # the Messages API has none


def test_system_is_lifted_and_tool_turns_are_blocks() -> None:
    messages = (
        ChatMessage(Role.SYSTEM, "Be brief."),
        ChatMessage(Role.SYSTEM, "Use metric units."),
        ChatMessage(Role.USER, "Weather in Paris and Rome?"),
        ChatMessage(Role.ASSISTANT, "Checking.", tool_calls=(
            ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
            ToolCall("toolu_2", "get_weather", '{"city":"Rome"}'))),
        ChatMessage(Role.TOOL, "18C", tool_call_id="toolu_1"),
        ChatMessage(Role.TOOL, "24C", tool_call_id="toolu_2"),
        ChatMessage(Role.USER, "Thanks"),
    )
    body = body_of(request(messages=messages))
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"city": "Rome"}}]},
        # Both results and the next user text share one user turn, results first.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
            {"type": "text", "text": "Thanks"}]},
    ]


def test_tools_and_tool_choice() -> None:
    tool = ToolDefinition("lookup", "Find things", {"type": "object", "properties": {}})
    bare = ToolDefinition("ping")
    body = body_of(request(tools=(tool, bare),
                           tool_choice=ToolChoice(ToolChoiceMode.NAMED, "lookup")))
    assert body["tools"] == [
        {"name": "lookup", "description": "Find things",
         "input_schema": {"type": "object", "properties": {}}},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "tool", "name": "lookup"}
    for mode, wire in [(ToolChoiceMode.REQUIRED, {"type": "any"}),
                       (ToolChoiceMode.AUTO, {"type": "auto"}),
                       (ToolChoiceMode.NONE, {"type": "none"})]:
        assert body_of(request(tools=(tool,), tool_choice=ToolChoice(mode)))["tool_choice"] == wire


def test_image_blocks_base64_and_url() -> None:
    message = ChatMessage(Role.USER, parts=(
        ImagePart(data=b"GIF89a", mime_type="image/gif"),
        ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
        ImagePart(url="https://img.example/a.png"),
        TextPart("Compare these.")))
    assert body_of(request(messages=(message,)))["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif",
                                     "data": "R0lGODlh"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                     "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://img.example/a.png"}},
        {"type": "text", "text": "Compare these."}]}]


def test_json_response_format_is_asked_for_in_the_system_prompt() -> None:
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, {"type": "object"}, "x")
    system = body_of(request(response_format=fmt))["system"]
    assert isinstance(system, str) and "JSON" in system and '{"type":"object"}' in system


def test_from_response_counts_cached_input_tokens() -> None:
    result = anthropic.from_response("p", json.loads(fixture("anthropic_message_tools.json")),
                                     request())
    assert result.text == "I'll check the weather."
    assert result.tool_calls == (ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                          '{"location":"San Francisco, CA","unit":"celsius"}'),)
    assert result.finish_reason is FinishReason.TOOL_CALLS
    assert result.usage == Usage(582, 89, 671)
    assert (result.model, result.response_id) == ("claude-3-5-sonnet-20241022",
                                                  "msg_01Aq9w938a90dw8q")


@pytest.mark.parametrize(("reason", "finish"), [
    ("end_turn", FinishReason.STOP), ("stop_sequence", FinishReason.STOP),
    ("max_tokens", FinishReason.LENGTH), ("tool_use", FinishReason.TOOL_CALLS),
    ("refusal", FinishReason.CONTENT_FILTER), ("pause_turn", FinishReason.STOP)])
def test_stop_reasons(reason: str, finish: FinishReason) -> None:
    assert anthropic.stop_reason(reason) is finish


@pytest.mark.parametrize("step", [0, 1, 13])
def test_stream_fixture_text_and_tool_use(step: int) -> None:
    events = drain(SseDecoder(anthropic.AnthropicStreamState("p", request())),
                   fixture("anthropic_stream_tools.sse"), step)
    assert events == [
        TextDelta("Okay"), TextDelta(", checking."),
        ToolCallDelta(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),
        ToolCallDelta(0, "", "", '{"location":'),
        ToolCallDelta(0, "", "", ' "San Francisco, CA"}'),
        StreamFinish(FinishReason.TOOL_CALLS, Usage(472, 89, 561), "claude-3-haiku-20240307"),
    ]


def test_stream_cut_after_message_delta_finalizes_but_before_does_not() -> None:
    data = fixture("anthropic_stream_tools.sse")
    before_stop = data.split(b"event: message_stop")[0]
    final = drain(SseDecoder(anthropic.AnthropicStreamState("p", request())), before_stop)[-1]
    assert isinstance(final, StreamFinish) and final.usage == Usage(472, 89, 561)
    before_delta = data.split(b"event: message_delta")[0]
    assert drain(SseDecoder(anthropic.AnthropicStreamState("p", request())),
                 before_delta)[-1] is None


def test_error_event_mid_stream() -> None:
    state = anthropic.AnthropicStreamState("p", request())
    data = '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    with pytest.raises(ProviderServerError, match="Overloaded"):
        state.on_chunk("error", data)
    rate = '{"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}'
    with pytest.raises(ProviderRateLimitError):
        state.on_chunk("error", rate)


@pytest.mark.parametrize(("status", "kind", "message", "headers", "cls"), [
    (400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum", {},
     ContextLengthError),
    (400, "invalid_request_error", "messages: field required", {}, ProviderRejectedError),
    (400, "invalid_request_error", "Output blocked by content filtering policy", {},
     ContentPolicyError),
    (401, "authentication_error", "invalid x-api-key", {}, ProviderAuthError),
    (403, "permission_error", "no access", {}, ProviderAuthError),
    (413, "request_too_large", "Request exceeds the maximum size", {}, ProviderRejectedError),
    (429, "rate_limit_error", "Number of requests has exceeded your rate limit",
     {"retry-after": "20"}, ProviderRateLimitError),
    (429, "overloaded_error", "Overloaded", {}, ProviderServerError),
    (500, "api_error", "Internal server error", {}, ProviderServerError),
    (529, "overloaded_error", "Overloaded", {}, ProviderServerError),
])
def test_map_error_table(status: int, kind: str, message: str, headers: dict[str, str],
                         cls: type) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}})
    error = anthropic.map_error("anthropic", status, body, headers)
    assert type(error) is cls
    assert error.retry_after_s == (20.0 if headers else None)
    assert message[:20] in error.message
