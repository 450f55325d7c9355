"""Gemini translation: request shapes, responses, stream chunks, errors."""

from __future__ import annotations

import json

import pytest

from provider_router.connectors import gemini
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

SPEC = http_spec(ProviderKind.GEMINI, None, base_url="https://gl.example/v1beta")


body_of = body_builder(gemini.to_request, SPEC)


def test_urls_carry_no_key_and_the_header_does() -> None:
    unary = gemini.to_request(request(model="gemini-2.0-flash"), SPEC, settings())
    assert unary.url == "https://gl.example/v1beta/models/gemini-2.0-flash:generateContent"
    streaming = gemini.to_request(request(model="models/gemini-2.0-flash"), SPEC, settings(),
                                  stream=True)
    assert streaming.url == ("https://gl.example/v1beta/models/gemini-2.0-flash"
                             ":streamGenerateContent?alt=sse")
    assert unary.headers["x-goog-api-key"] == KEY
    assert KEY not in unary.url and KEY not in streaming.url


def test_missing_key_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailableError):
        gemini.to_request(request(), SPEC, settings(env={}))


def test_roles_system_instruction_and_generation_config() -> None:
    messages = (ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Hi"),
                ChatMessage(Role.ASSISTANT, "Hello!"), ChatMessage(Role.USER, "Bye"))
    params = GenerationParams(temperature=0.1, top_p=0.5, max_tokens=64, stop=("\n",), seed=9)
    body = body_of(request(messages=messages, params=params,
                           response_format=ResponseFormat(ResponseFormatType.JSON_SCHEMA,
                                                          {"type": "object"})))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "Bye"}]}]
    assert body["generationConfig"] == {
        "temperature": 0.1, "topP": 0.5, "maxOutputTokens": 64, "stopSequences": ["\n"],
        "seed": 9, "responseMimeType": "application/json",
        "responseSchema": {"type": "object"}}


def test_function_declarations_calls_and_responses() -> None:
    tool = ToolDefinition("get_weather", "Weather", {"type": "object",
                                                      "properties": {"city": {"type": "string"}}})
    messages = (
        ChatMessage(Role.USER, "Paris?"),
        ChatMessage(Role.ASSISTANT, tool_calls=(ToolCall("c1", "get_weather",
                                                          '{"city": "Paris"}'),)),
        ChatMessage(Role.TOOL, '{"temp": 18}', tool_call_id="c1"),
        ChatMessage(Role.TOOL, "plain text result", tool_call_id="c1", name="get_weather"),
    )
    body = body_of(request(messages=messages, tools=(tool,),
                           tool_choice=ToolChoice(ToolChoiceMode.NAMED, "get_weather")))
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert body["contents"][1:] == [  # type: ignore[index]
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                      "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"temp": 18}}}]},
        {"role": "user", "parts": [{"functionResponse": {
            "name": "get_weather", "response": {"content": "plain text result"}}}]},
    ]


@pytest.mark.parametrize(("mode", "wire"), [(ToolChoiceMode.AUTO, {"mode": "AUTO"}),
                                            (ToolChoiceMode.NONE, {"mode": "NONE"}),
                                            (ToolChoiceMode.REQUIRED, {"mode": "ANY"})])
def test_calling_modes(mode: ToolChoiceMode, wire: dict[str, str]) -> None:
    body = body_of(request(tools=(ToolDefinition("t"),), tool_choice=ToolChoice(mode)))
    assert body["toolConfig"] == {"functionCallingConfig": wire}


def test_images_inline_data_and_file_data() -> None:
    message = ChatMessage(Role.USER, parts=(
        TextPart("Describe"), ImagePart(data=b"\xff\xd8\xff", mime_type="image/jpeg"),
        ImagePart(url="https://generativelanguage.googleapis.com/v1beta/files/abc",
                  mime_type="image/png")))
    assert body_of(request(messages=(message,)))["contents"] == [{"role": "user", "parts": [
        {"text": "Describe"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
        {"fileData": {"mimeType": "image/png",
                      "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]


def test_from_response_with_function_call_and_thinking_tokens() -> None:
    result = gemini.from_response("p", json.loads(fixture("gemini_response_tools.json")),
                                  request())
    assert result.text == "Checking the lights."
    assert result.tool_calls == (ToolCall("call_0", "set_light_values",
                                          '{"brightness":25,"color_temp":"warm"}'),)
    assert result.finish_reason is FinishReason.TOOL_CALLS  # Gemini says STOP
    assert result.usage == Usage(48, 22, 70)
    assert (result.model, result.response_id) == ("gemini-2.0-flash", "mAitaLmkHPPlz7IPvtfUqQ4")


def test_blocked_prompt_is_a_content_policy_error() -> None:
    with pytest.raises(ContentPolicyError, match="SAFETY"):
        gemini.from_response("p", {"promptFeedback": {"blockReason": "SAFETY"}}, request())


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", FinishReason.STOP), ("MAX_TOKENS", FinishReason.LENGTH),
    ("SAFETY", FinishReason.CONTENT_FILTER), ("RECITATION", FinishReason.CONTENT_FILTER),
    ("BLOCKLIST", FinishReason.CONTENT_FILTER), ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
    ("MALFORMED_FUNCTION_CALL", FinishReason.ERROR), ("OTHER", FinishReason.ERROR)])
def test_finish_reasons(reason: str, finish: FinishReason) -> None:
    assert gemini.finish_reason(reason, False) is finish


@pytest.mark.parametrize("step", [0, 1, 9])
def test_stream_fixture_crlf_frames_without_terminator(step: int) -> None:
    events = drain(SseDecoder(gemini.GeminiStreamState("p", request())),
                   fixture("gemini_stream.sse"), step)
    assert events == [TextDelta("The"), TextDelta(" sky is blue"), TextDelta("."),
                      StreamFinish(FinishReason.STOP, Usage(9, 5, 14), "gemini-2.0-flash")]


def test_stream_without_finish_reason_is_cut() -> None:
    data = fixture("gemini_stream.sse").rsplit(b"data: ", 1)[0]
    assert drain(SseDecoder(gemini.GeminiStreamState("p", request())), data)[-1] is None


def test_stream_function_calls_arrive_whole() -> None:
    state = gemini.GeminiStreamState("p", request())
    chunk = {"candidates": [{"content": {"parts": [
        {"functionCall": {"id": "fc_1", "name": "a", "args": {"x": 1}}},
        {"functionCall": {"name": "b", "args": {}}}]}, "finishReason": "STOP"}]}
    assert state.on_chunk("message", json.dumps(chunk)) == [
        ToolCallDelta(0, "fc_1", "a", '{"x":1}'), ToolCallDelta(1, "call_1", "b", "{}")]
    assert state.finish_reason is FinishReason.TOOL_CALLS


def test_stream_blocked_and_error_chunks_raise() -> None:
    state = gemini.GeminiStreamState("p", request())
    with pytest.raises(ContentPolicyError):
        state.on_chunk("message", '{"promptFeedback": {"blockReason": "OTHER"}}')
    with pytest.raises(ProviderServerError):
        state.on_chunk("message", '{"error": {"code": 500, "message": "x", '
                                  '"status": "INTERNAL"}}')


def status_body(code: int, status: str, message: str, reason: str = "") -> str:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return json.dumps({"error": error})


@pytest.mark.parametrize(("status", "body", "cls"), [
    (400, status_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                      "API_KEY_INVALID"), ProviderAuthError),
    (400, status_body(400, "FAILED_PRECONDITION", "Gemini API free tier is not available in "
                      "your country. Please enable billing on your project in Google AI Studio."),
     ProviderAuthError),
    (400, status_body(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the "
                      "maximum number of tokens allowed (1048576)."), ContextLengthError),
    (400, status_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
     ProviderRejectedError),
    (403, status_body(403, "PERMISSION_DENIED", "Your API key doesn't have the required "
                      "permissions."), ProviderAuthError),
    (404, status_body(404, "NOT_FOUND", "models/nope is not found"), ProviderRejectedError),
    (429, status_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
     ProviderRateLimitError),
    (500, status_body(500, "INTERNAL", "An internal error has occurred."), ProviderServerError),
    (503, status_body(503, "UNAVAILABLE", "The model is overloaded."), ProviderServerError),
])
def test_map_error_table(status: int, body: str, cls: type) -> None:
    error = gemini.map_error("gemini", status, body, {"Retry-After": "4"})
    assert type(error) is cls
    assert error.retry_after_s == 4.0
