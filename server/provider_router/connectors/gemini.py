"""Google Gemini API (generativelanguage.googleapis.com, v1beta).

Wire format: https://ai.google.dev/api/generate-content (GenerateContentRequest and
GenerateContentResponse; `streamGenerateContent?alt=sse` sends one full response object per
SSE event and has no terminator, the last one carries finishReason and usageMetadata),
https://ai.google.dev/gemini-api/docs/function-calling and
https://ai.google.dev/gemini-api/docs/troubleshooting (error statuses). The key travels in
the `x-goog-api-key` header, never in the URL, so URLs are safe to show in errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from provider_router.connectors.errormap import ErrorRule, rule, table_mapper
from provider_router.connectors.http import HttpCall
from provider_router.connectors.media import inline
from provider_router.connectors.payload import (
    Json,
    arguments_object,
    dumps,
    field,
    integer,
    items,
    obj,
    parse_json,
    text,
    to_json_dict,
)
from provider_router.connectors.remote import RemoteConnector, WireProtocol
from provider_router.connectors.settings import ConnectorSettings, base_url, require_api_key
from provider_router.connectors.streaming import SseDecoder, StreamState, estimate_usage
from provider_router.domain import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    FinishReason,
    ImagePart,
    JsonObject,
    JsonValue,
    ProviderRequest,
    ProviderSpec,
    ResponseFormatType,
    Role,
    StreamEvent,
    ToolCall,
    ToolChoiceMode,
    Usage,
)
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    ProviderAuthError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ProviderServerError,
)

# https://ai.google.dev/api/generate-content#FinishReason
_FINISH: Mapping[str, FinishReason] = MappingProxyType({
    "STOP": FinishReason.STOP,
    "FINISH_REASON_UNSPECIFIED": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "LANGUAGE": FinishReason.ERROR,
    "OTHER": FinishReason.ERROR,
    "MALFORMED_FUNCTION_CALL": FinishReason.ERROR,
})

ERROR_TABLE: tuple[ErrorRule, ...] = (
    # An invalid key is a 400 INVALID_ARGUMENT whose ErrorInfo reason says so.
    rule(ProviderAuthError, codes=("api_key_invalid", "permission_denied", "unauthenticated")),
    # Free tier unavailable in the region / billing not enabled: the account needs a human.
    rule(ProviderAuthError, codes=("failed_precondition",)),
    rule(ProviderRateLimitError, codes=("resource_exhausted",)),
    rule(ContextLengthError, codes=("invalid_argument",),
         markers=("exceeds the maximum number of tokens", "input token count")),
    rule(ContentPolicyError, 400, markers=("safety", "prohibited content", "blocked")),
    rule(ProviderServerError, codes=("internal", "unavailable", "deadline_exceeded")),
)


map_error = table_mapper(ERROR_TABLE)
"""Classify a Gemini error response (google.rpc.Status) or in-stream error."""


# --- request ----------------------------------------------------------------------------------


def headers_for(spec: ProviderSpec, settings: ConnectorSettings) -> dict[str, str]:
    """Extra headers from the spec, then `x-goog-api-key`."""
    key = require_api_key(spec, settings.env)
    headers = dict(spec.headers)
    headers["x-goog-api-key"] = key.reveal()
    return headers


def model_path(model: str) -> str:
    """`models/{model}`, accepting names given with or without the prefix."""
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def to_request(request: ProviderRequest, spec: ProviderSpec, settings: ConnectorSettings, *,
               stream: bool = False) -> HttpCall:
    """The generateContent / streamGenerateContent request for a domain request."""
    chat = request.chat
    body: dict[str, JsonValue] = {"contents": _contents(chat.messages)}
    system = "\n\n".join(m.text() for m in chat.messages if m.role is Role.SYSTEM and m.text())
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = _generation_config(chat)
    if config:
        body["generationConfig"] = config
    if chat.tools:
        declarations: list[JsonValue] = [_declaration(t.name, t.description, t.parameters)
                                         for t in chat.tools]
        body["tools"] = [{"functionDeclarations": declarations}]
        if chat.tool_choice is not None:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(chat)}
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    url = f"{base_url(spec)}/{model_path(request.model)}:{method}"
    return HttpCall("POST", url, headers_for(spec, settings), body)


def _generation_config(chat: ChatRequest) -> dict[str, JsonValue]:
    params = chat.params
    config: dict[str, JsonValue] = {}
    if params.temperature is not None:
        config["temperature"] = params.temperature
    if params.top_p is not None:
        config["topP"] = params.top_p
    if params.max_tokens is not None:
        config["maxOutputTokens"] = params.max_tokens
    if params.stop:
        config["stopSequences"] = list(params.stop)
    if params.seed is not None:
        config["seed"] = params.seed
    fmt = chat.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        config["responseMimeType"] = "application/json"
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
            config["responseSchema"] = to_json_dict(fmt.json_schema)
    return config


def _contents(messages: tuple[ChatMessage, ...]) -> list[JsonValue]:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    contents: list[JsonValue] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "model" if message.role is Role.ASSISTANT else "user"
        contents.append({"role": role, "parts": _parts(message, names)})
    return contents


def _parts(message: ChatMessage, names: Mapping[str, str]) -> list[JsonValue]:
    if message.role is Role.TOOL:
        # functionResponse.response must be an object; a JSON object result is passed as
        # is, anything else is wrapped.
        name = message.name or names.get(message.tool_call_id, "")
        return [{"functionResponse": {"name": name, "response": _tool_result(message.text())}}]
    parts: list[JsonValue] = []
    if not message.parts and message.content:
        parts.append({"text": message.content})
    for part in message.parts:
        if isinstance(part, ImagePart):
            parts.append(_image(part))
        elif part.text:
            parts.append({"text": part.text})
    for call in message.tool_calls:
        parts.append({"functionCall": {"name": call.name,
                                       "args": arguments_object(call.arguments_json)}})
    return parts


def _tool_result(result: str) -> JsonValue:
    try:
        value = parse_json(result)
    except ValueError:
        value = result
    return value if isinstance(value, dict) else {"content": value}


def _image(part: ImagePart) -> JsonValue:
    image = inline(part)
    if image is not None:
        return {"inlineData": {"mimeType": image.mime_type, "data": image.base64_data}}
    # Remote images must be Gemini Files API or GCS URIs; plain web URLs are refused upstream.
    return {"fileData": {"mimeType": part.mime_type or "image/jpeg", "fileUri": part.url}}


def _declaration(name: str, description: str, parameters: JsonObject) -> JsonValue:
    declaration: dict[str, JsonValue] = {"name": name}
    if description:
        declaration["description"] = description
    if parameters:
        declaration["parameters"] = to_json_dict(parameters)
    return declaration


def _calling_config(chat: ChatRequest) -> JsonValue:
    choice = chat.tool_choice
    if choice is None or choice.mode is ToolChoiceMode.AUTO:
        return {"mode": "AUTO"}
    if choice.mode is ToolChoiceMode.NONE:
        return {"mode": "NONE"}
    if choice.mode is ToolChoiceMode.NAMED:
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": "ANY"}


def probe_request(spec: ProviderSpec, settings: ConnectorSettings) -> HttpCall:
    """GET {base}/models: lists models, spends no tokens."""
    return HttpCall("GET", f"{base_url(spec)}/models", headers_for(spec, settings))


# --- response ---------------------------------------------------------------------------------


def finish_reason(value: JsonValue, has_tool_calls: bool) -> FinishReason:
    """The normalized finish reason; Gemini says STOP even when it calls functions."""
    reason = _FINISH.get(text(value), FinishReason.STOP)
    return FinishReason.TOOL_CALLS if has_tool_calls and reason is FinishReason.STOP else reason


def usage_from(value: JsonValue) -> Usage | None:
    """usageMetadata as Usage (thinking tokens count as output), or None when absent."""
    meta = obj(value)
    if not meta:
        return None
    prompt = integer(meta.get("promptTokenCount"))
    completion = integer(meta.get("candidatesTokenCount")) + integer(
        meta.get("thoughtsTokenCount"))
    total = integer(meta.get("totalTokenCount")) or prompt + completion
    return Usage(prompt, completion, total)


def blocked(provider: str, body: Json) -> ContentPolicyError | None:
    """The error for a prompt Gemini refused outright (promptFeedback.blockReason)."""
    reason = text(field(body, "promptFeedback", "blockReason"))
    if not reason:
        return None
    return ContentPolicyError(provider, f"prompt blocked: {reason}", status_code=200)


def candidate_parts(body: Json) -> tuple[str, list[tuple[str, str, str]], JsonValue]:
    """Text, function calls (id, name, args JSON) and finishReason of the first candidate.

    Thought parts (thinking models) are not part of the answer and are skipped.
    """
    candidate = obj((items(field(body, "candidates")) or [None])[0])
    texts: list[str] = []
    calls: list[tuple[str, str, str]] = []
    for part in items(field(candidate, "content", "parts")):
        call = obj(field(part, "functionCall"))
        if call:
            calls.append((text(call.get("id")), text(call.get("name")),
                          dumps(call.get("args") or {})))
        elif field(part, "thought") is not True:
            texts.append(text(field(part, "text")))
    return "".join(texts), calls, candidate.get("finishReason")


def from_response(provider: str, body: JsonValue, request: ProviderRequest) -> ChatResult:
    """The normalized result of a generateContent response."""
    refused = blocked(provider, body)
    if refused is not None:
        raise refused
    if not items(field(body, "candidates")):
        raise ProviderProtocolError(provider, "response has no candidates")
    content, found, reason = candidate_parts(body)
    # Older models give function calls no id; the caller needs one to send results back.
    calls = tuple(ToolCall(call_id or f"call_{i}", name, args)
                  for i, (call_id, name, args) in enumerate(found))
    usage = usage_from(field(body, "usageMetadata")) or estimate_usage(
        request, content + "".join(c.arguments_json for c in calls))
    return ChatResult(text(field(body, "modelVersion")) or request.model, content,
                      finish_reason(reason, bool(calls)), usage, calls,
                      text(field(body, "responseId")))


class GeminiStreamState(StreamState):
    """streamGenerateContent responses → events; finishes once a finishReason arrived."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        super().__init__(provider, request)
        self._calls = 0

    def on_chunk(self, event: str, data: str) -> list[StreamEvent]:
        """Events from one GenerateContentResponse chunk."""
        chunk = self.decode(data)
        if chunk is None:
            return []
        if chunk.get("error"):
            raise map_error(self.provider, 0, data, {})
        refused = blocked(self.provider, chunk)
        if refused is not None:
            raise refused
        self.model = text(chunk.get("modelVersion")) or self.model
        self.usage = usage_from(chunk.get("usageMetadata")) or self.usage
        content, calls, reason = candidate_parts(chunk)
        events = self.text(content)
        for call_id, name, args in calls:
            # Gemini sends each function call whole, never in fragments.
            events.extend(self.tool(self._calls, call_id or f"call_{self._calls}", name, args))
            self._calls += 1
        if isinstance(reason, str) and reason:
            self.finish_reason = finish_reason(reason, self._calls > 0)
        return events


PROTOCOL = WireProtocol(to_request=to_request, from_response=from_response,
                        stream_state=GeminiStreamState, framing=SseDecoder,
                        probe_request=probe_request, map_error=map_error)
"""This module's wire translation, as the shared HTTP connector uses it."""


class GeminiConnector(RemoteConnector):
    """Google's Gemini API."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        super().__init__(spec, settings, PROTOCOL)
