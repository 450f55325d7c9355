"""OpenAI / OpenAI-compatible translation: request shapes, responses, stream chunks, errors."""

from __future__ import annotations

import json

import pytest

from provider_router.connectors import openai
from provider_router.connectors.streaming import SseDecoder
from provider_router.domain import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    ImagePart,
    JsonValue,
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
    ProviderError,
    ProviderQuotaError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
    ProviderUnavailableError,
)
from tests.fakes.harness import KEY, drain, fixture, http_spec, request, settings
from tests.unit.connectors.conftest import body_builder

SPEC = http_spec(ProviderKind.OPENAI, None, base_url="https://api.example/v1/",
                 headers={"OpenAI-Organization": "org-1"})
WEATHER = ToolDefinition("get_weather", "Weather for a city",
                         {"type": "object", "properties": {"city": {"type": "string"}}})


body_of = body_builder(openai.to_request, SPEC)


def test_request_url_headers_and_basic_body() -> None:
    call = openai.to_request(request("hi", model="gpt-4o"), SPEC, settings())
    assert (call.method, call.url) == ("POST", "https://api.example/v1/chat/completions")
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["OpenAI-Organization"] == "org-1"
    assert call.body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    assert KEY not in repr(call)


def test_stream_asks_for_usage() -> None:
    body = body_of(request(), stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_params_use_max_completion_tokens_for_openai_and_max_tokens_for_compatible() -> None:
    params = GenerationParams(temperature=0.2, top_p=0.9, max_tokens=50, stop=("END",), seed=7)
    body = body_of(request(params=params))
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"]) == (
        0.2, 0.9, ["END"], 7)
    compat = http_spec(ProviderKind.OPENAI_COMPATIBLE, None, base_url="http://vllm:8000/v1",
                       api_key_env="")
    call = openai.to_request(request(params=params), compat, settings(env={}))
    assert call.body is not None and call.body["max_tokens"] == 50
    assert "Authorization" not in call.headers  # the key is optional for compatible servers


def test_openai_without_key_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailableError, match="set FAKE_PROVIDER_KEY"):
        openai.to_request(request(), SPEC, settings(env={}))


def test_conversation_with_system_tools_and_tool_results() -> None:
    messages = (
        ChatMessage(Role.SYSTEM, "Be brief."),
        ChatMessage(Role.USER, "Weather in Paris?", name="alice"),
        ChatMessage(Role.ASSISTANT, tool_calls=(ToolCall("call_1", "get_weather",
                                                          '{"city":"Paris"}'),)),
        ChatMessage(Role.TOOL, "18C", tool_call_id="call_1"),
    )
    body = body_of(request(messages=messages, tools=(WEATHER,),
                           tool_choice=ToolChoice(ToolChoiceMode.NAMED, "get_weather")))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(("mode", "wire"), [
    (ToolChoiceMode.AUTO, "auto"), (ToolChoiceMode.NONE, "none"),
    (ToolChoiceMode.REQUIRED, "required")])
def test_tool_choice_modes(mode: ToolChoiceMode, wire: str) -> None:
    assert body_of(request(tools=(WEATHER,), tool_choice=ToolChoice(mode)))["tool_choice"] == wire


def test_vision_parts_use_image_url_and_data_urls() -> None:
    message = ChatMessage(Role.USER, parts=(
        TextPart("What is this?"), ImagePart(url="https://img.example/cat.png"),
        ImagePart(data=b"\x89PNG", mime_type="image/png")))
    content = body_of(request(messages=(message,)))["messages"]
    assert content == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
    ]}]


def test_response_formats() -> None:
    assert body_of(request(response_format=ResponseFormat(ResponseFormatType.JSON)))[
        "response_format"] == {"type": "json_object"}
    schema: dict[str, JsonValue] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, schema, "count")
    assert body_of(request(response_format=fmt))["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    assert "response_format" not in body_of(
        request(response_format=ResponseFormat(ResponseFormatType.TEXT)))


def test_from_response_with_tool_calls() -> None:
    result = openai.from_response("p", json.loads(fixture("openai_chat_tools.json")), request())
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.text == ""
    assert result.finish_reason is FinishReason.TOOL_CALLS
    assert result.tool_calls == (ToolCall("call_abc123", "get_current_weather",
                                          '{\n"location": "Boston, MA"\n}'),)
    assert result.usage == Usage(82, 17, 99)
    assert result.response_id == "chatcmpl-abc123"


def test_from_response_without_usage_estimates_and_flags_it() -> None:
    body: JsonValue = {"model": "m", "choices": [{"index": 0, "message": {"content": "Hello there"},
                                       "finish_reason": "length"}]}
    result = openai.from_response("p", body, request("Say hello"))
    assert result.finish_reason is FinishReason.LENGTH
    assert result.usage.estimated and result.usage.completion_tokens == 3


def test_refusal_is_a_content_filter_finish() -> None:
    body: JsonValue = {"choices": [{"message": {"content": None, "refusal": "I can't help with that."},
                         "finish_reason": "stop"}]}
    result = openai.from_response("p", body, request())
    assert (result.text, result.finish_reason) == ("I can't help with that.",
                                                   FinishReason.CONTENT_FILTER)


def test_response_without_choices_is_a_protocol_error() -> None:
    with pytest.raises(ProviderError, match="no choices"):
        openai.from_response("p", {"object": "chat.completion"}, request())


@pytest.mark.parametrize("step", [0, 1, 7])
def test_stream_fixture_with_tool_call_fragments(step: int) -> None:
    decoder = SseDecoder(openai.OpenAIStreamState("p", request()))
    events = drain(decoder, fixture("openai_stream_tools.sse"), step)
    assert events == [
        TextDelta("Let me check."),
        ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", ""),
        ToolCallDelta(0, "", "", '{"location":'),
        ToolCallDelta(0, "", "", '"Paris"}'),
        StreamFinish(FinishReason.TOOL_CALLS, Usage(61, 16, 77), "gpt-4o-mini"),
    ]
    assert decoder.done


def test_stream_cut_before_done_but_after_finish_reason_finalizes() -> None:
    data = fixture("openai_stream_tools.sse").split(b"data: [DONE]")[0]
    data = data.rsplit(b"data: ", 1)[0]  # also lose the usage chunk
    events = drain(SseDecoder(openai.OpenAIStreamState("p", request("hi"))), data)
    final = events[-1]
    assert isinstance(final, StreamFinish) and final.finish_reason is FinishReason.TOOL_CALLS
    assert final.usage.estimated  # the usage chunk never came


def test_stream_cut_before_finish_reason_does_not_finish() -> None:
    data = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
    assert drain(SseDecoder(openai.OpenAIStreamState("p", request())), data) == [
        TextDelta("Hel"), None]


def test_malformed_chunk_is_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    state = openai.OpenAIStreamState("p", request())
    assert state.on_chunk("message", '{"choices": [') == []
    assert state.on_chunk("message", '{"choices":[{"index":0,"delta":{"content":"ok"}}]}'
                          ) == [TextDelta("ok")]
    assert state.malformed == 1
    assert "malformed stream chunk" in caplog.text


def test_error_chunk_mid_stream_raises() -> None:
    state = openai.OpenAIStreamState("p", request())
    with pytest.raises(ProviderServerError, match="stream error: boom"):
        state.on_chunk("message", '{"error": {"message": "boom", "type": "server_error"}}')


def test_done_without_finish_reason_counts_as_stop() -> None:
    events = drain(SseDecoder(openai.OpenAIStreamState("p", request())),
                   b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n')
    final = events[-1]
    assert isinstance(final, StreamFinish) and final.finish_reason is FinishReason.STOP


@pytest.mark.parametrize(("status", "body", "headers", "cls", "retry"), [
    (429, {"error": {"message": "Rate limit reached", "type": "requests",
                     "code": "rate_limit_exceeded"}}, {"retry-after": "12"},
     ProviderRateLimitError, 12.0),
    (429, {"error": {"message": "slow down", "type": "tokens"}},
     {"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}, ProviderRateLimitError, None),
    (429, {"error": {"message": "slow", "type": "tokens"}}, {"retry-after-ms": "1500"},
     ProviderRateLimitError, 1.5),
    (429, {"error": {"message": "You exceeded your current quota",
                     "type": "insufficient_quota", "code": "insufficient_quota"}}, {},
     ProviderQuotaError, None),
    (400, {"error": {"message": "This model's maximum context length is 128000 tokens.",
                     "type": "invalid_request_error", "code": "context_length_exceeded"}}, {},
     ContextLengthError, None),
    (400, {"object": "error", "message": "This model's maximum context length is 4096 tokens.",
           "type": "BadRequestError", "code": 400}, {}, ContextLengthError, None),
    (400, {"error": {"message": "Your request was rejected as a result of our safety system.",
                     "type": "invalid_request_error", "code": "content_policy_violation"}}, {},
     ContentPolicyError, None),
    (400, {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error"}}, {},
     ProviderRejectedError, None),
    (401, {"error": {"message": "Incorrect API key provided: sk-proj-****abcd",
                     "type": "invalid_request_error", "code": "invalid_api_key"}}, {},
     ProviderAuthError, None),
    (403, {"error": {"message": "Country not supported",
                     "code": "unsupported_country_region_territory"}}, {}, ProviderAuthError, None),
    (500, {"error": {"message": "The server had an error", "type": "server_error"}}, {},
     ProviderServerError, None),
    (503, {"error": {"message": "overloaded", "type": "server_error"}}, {"Retry-After": "2"},
     ProviderServerError, 2.0),
])
def test_map_error_table(status: int, body: object, headers: dict[str, str], cls: type,
                         retry: float | None) -> None:
    error = openai.map_error("openai", status, json.dumps(body), headers)
    assert type(error) is cls
    assert error.status_code == status
    if retry is not None or "Wed" not in headers.get("retry-after", ""):
        assert error.retry_after_s == retry
    else:
        assert error.retry_after_s is not None and error.retry_after_s > 1e6
    assert "sk-proj" not in error.message
