"""Ollama translation: request shapes, responses, NDJSON stream lines, errors."""

from __future__ import annotations

import json

import pytest

from provider_router.connectors import ollama
from provider_router.connectors.streaming import NdjsonDecoder
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
    ContextLengthError,
    ProviderRejectedError,
    ProviderServerError,
)
from tests.fakes.harness import KEY, drain, fixture, http_spec, request, settings
from tests.unit.connectors.conftest import body_builder

SPEC = http_spec(ProviderKind.OLLAMA, None, base_url="http://ollama.local:11434/",
                 api_key_env="")


body_of = body_builder(ollama.to_request, SPEC)


def test_url_stream_flag_and_no_auth_by_default() -> None:
    call = ollama.to_request(request("hi", model="llama3.2"), SPEC, settings())
    assert call.url == "http://ollama.local:11434/api/chat"
    assert call.body == {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
                         "stream": False}
    assert "Authorization" not in call.headers
    assert body_of(request(), stream=True)["stream"] is True
    keyed = http_spec(ProviderKind.OLLAMA, None, base_url="http://o")
    assert ollama.to_request(request(), keyed, settings()).headers["Authorization"] == (
        f"Bearer {KEY}")


def test_options_and_formats() -> None:
    params = GenerationParams(temperature=0.3, top_p=0.7, max_tokens=12, stop=("x",), seed=1)
    body = body_of(request(params=params, response_format=ResponseFormat(ResponseFormatType.JSON)))
    assert body["options"] == {"temperature": 0.3, "top_p": 0.7, "num_predict": 12,
                               "stop": ["x"], "seed": 1}
    assert body["format"] == "json"
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, {"type": "object"})
    assert body_of(request(response_format=fmt))["format"] == {"type": "object"}


def test_images_tools_and_tool_results() -> None:
    messages = (
        ChatMessage(Role.USER, parts=(TextPart("What is it?"), ImagePart(data=b"abc"))),
        ChatMessage(Role.ASSISTANT, tool_calls=(ToolCall("call_0", "look", '{"q": 1}'),)),
        ChatMessage(Role.TOOL, "a cat", tool_call_id="call_0"),
    )
    tool = ToolDefinition("look", "Look it up")
    body = body_of(request(messages=messages, tools=(tool,)))
    assert body["messages"] == [
        {"role": "user", "content": "What is it?", "images": ["YWJj"]},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "look", "arguments": {"q": 1}}}]},
        {"role": "tool", "content": "a cat", "tool_name": "look"}]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "look", "description": "Look it up",
        "parameters": {"type": "object", "properties": {}}}}]
    assert "tools" not in body_of(request(tools=(tool,),
                                          tool_choice=ToolChoice(ToolChoiceMode.NONE)))


def test_remote_image_urls_are_rejected() -> None:
    message = ChatMessage(Role.USER, parts=(ImagePart(url="https://x/y.png"),))
    with pytest.raises(ProviderRejectedError, match="inline"):
        body_of(request(messages=(message,)))


def test_from_response_with_tool_calls() -> None:
    result = ollama.from_response("p", json.loads(fixture("ollama_chat_tools.json")), request())
    assert result.tool_calls == (ToolCall("call_0", "get_current_weather",
                                          '{"format":"celsius","location":"Paris, FR"}'),)
    assert result.finish_reason is FinishReason.TOOL_CALLS
    assert result.usage == Usage(122, 33, 155)
    assert result.model == "llama3.2"


def test_from_response_without_counts_estimates() -> None:
    result = ollama.from_response("p", {"message": {"content": "hey"}, "done": True}, request())
    assert result.usage.estimated and result.finish_reason is FinishReason.STOP


@pytest.mark.parametrize("step", [0, 1, 11])
def test_stream_fixture(step: int) -> None:
    events = drain(NdjsonDecoder(ollama.OllamaStreamState("p", request())),
                   fixture("ollama_stream.ndjson"), step)
    assert events == [TextDelta("The"), TextDelta(" sky"),
                      StreamFinish(FinishReason.LENGTH, Usage(26, 282, 308), "llama3.2")]


def test_stream_tool_calls_and_cut_stream() -> None:
    state = ollama.OllamaStreamState("p", request())
    line = {"message": {"content": "", "tool_calls": [
        {"function": {"name": "a", "arguments": {"x": 1}}}]}, "done": False}
    assert state.on_chunk("message", json.dumps(line)) == [
        ToolCallDelta(0, "call_0", "a", '{"x":1}')]
    assert state.finish() is None  # no done line yet: a cut stream


def test_stream_error_line_raises() -> None:
    with pytest.raises(ProviderServerError, match="model runner"):
        ollama.OllamaStreamState("p", request()).on_chunk(
            "message", '{"error": "model runner has unexpectedly stopped"}')


@pytest.mark.parametrize(("status", "message", "cls"), [
    (404, 'model "nope" not found, try pulling it first', ProviderRejectedError),
    (400, "input length exceeds the context length", ContextLengthError),
    (500, "llama runner process has terminated", ProviderServerError),
])
def test_map_error_table(status: int, message: str, cls: type) -> None:
    error = ollama.map_error("ollama", status, json.dumps({"error": message}), {})
    assert type(error) is cls
    assert message in error.message
