"""Anthropic Messages API.

Wire format: https://docs.anthropic.com/en/api/messages (request/response),
https://docs.anthropic.com/en/docs/build-with-claude/streaming (event types) and
https://docs.anthropic.com/en/api/errors (error types, the in-stream `error` event).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from provider_router.connectors.errormap import ErrorRule, rule, table_mapper
from provider_router.connectors.http import HttpCall
from provider_router.connectors.media import inline
from provider_router.connectors.payload import (
    arguments_object,
    dumps,
    field,
    integer,
    items,
    obj,
    text,
    to_json_dict,
)
from provider_router.connectors.remote import RemoteConnector, WireProtocol
from provider_router.connectors.settings import ConnectorSettings, base_url, require_api_key
from provider_router.connectors.streaming import SseDecoder, StreamState
from provider_router.domain import (
    ChatMessage,
    ChatResult,
    FinishReason,
    ImagePart,
    JsonObject,
    JsonValue,
    ProviderRequest,
    ProviderSpec,
    ResponseFormat,
    ResponseFormatType,
    Role,
    StreamEvent,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderServerError,
)

# https://docs.anthropic.com/en/api/handling-stop-reasons
_STOP: Mapping[str, FinishReason] = MappingProxyType({
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
})

ERROR_TABLE: tuple[ErrorRule, ...] = (
    rule(ContextLengthError, codes=("invalid_request_error",),
         markers=("prompt is too long", "exceed context limit", "context window")),
    rule(ContentPolicyError, codes=("invalid_request_error",),
         markers=("content filtering policy", "usage policy", "usage policies")),
    rule(ProviderAuthError, codes=("authentication_error", "permission_error", "billing_error")),
    rule(ProviderRateLimitError, codes=("rate_limit_error",)),
    # overloaded_error also arrives as HTTP 429 or in-stream; it is capacity, not our quota.
    rule(ProviderServerError, codes=("overloaded_error", "api_error", "timeout_error")),
)

_JSON_INSTRUCTION = "Respond with one JSON value only, with no text before or after it."


map_error = table_mapper(ERROR_TABLE)
"""Classify an Anthropic error response or in-stream `error` event."""


# --- request ----------------------------------------------------------------------------------


def headers_for(spec: ProviderSpec, settings: ConnectorSettings) -> dict[str, str]:
    """Extra headers from the spec, then `x-api-key` and `anthropic-version`."""
    key = require_api_key(spec, settings.env)
    headers = dict(spec.headers)
    headers["x-api-key"] = key.reveal()
    headers["anthropic-version"] = settings.anthropic_version
    return headers


def to_request(request: ProviderRequest, spec: ProviderSpec, settings: ConnectorSettings, *,
               stream: bool = False) -> HttpCall:
    """The Messages API request for a domain request."""
    chat = request.chat
    params = chat.params
    body: dict[str, JsonValue] = {
        "model": request.model,
        # Required by the API; the configured default applies when the caller sets none.
        "max_tokens": params.max_tokens or settings.anthropic_max_tokens,
        "messages": _messages(chat.messages),
    }
    system = _system(chat.messages, chat.response_format)
    if system:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    # The Messages API has no seed parameter; it is dropped rather than rejected.
    if chat.tools:
        body["tools"] = [_tool(t.name, t.description, t.parameters) for t in chat.tools]
    if chat.tool_choice is not None and chat.tools:
        body["tool_choice"] = _tool_choice(chat.tool_choice)
    if stream:
        body["stream"] = True
    return HttpCall("POST", f"{base_url(spec)}/v1/messages", headers_for(spec, settings), body)


def _system(messages: tuple[ChatMessage, ...], fmt: ResponseFormat | None) -> str:
    # The API takes the system prompt as a top-level field, not as a message.
    texts = [m.text() for m in messages if m.role is Role.SYSTEM and m.text()]
    # No JSON mode in the stable Messages API: ask for JSON in the system prompt instead.
    if fmt is not None and fmt.type is ResponseFormatType.JSON:
        texts.append(_JSON_INSTRUCTION)
    elif fmt is not None and fmt.type is ResponseFormatType.JSON_SCHEMA:
        schema = dumps(to_json_dict(fmt.json_schema or {}))
        texts.append(f"{_JSON_INSTRUCTION} It must match this JSON schema: {schema}")
    return "\n\n".join(texts)


def _messages(messages: tuple[ChatMessage, ...]) -> list[JsonValue]:
    turns: list[tuple[str, list[JsonValue]]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        # Tool results travel in a user turn; consecutive same-role turns are merged so
        # tool_result blocks sit together right after the assistant's tool_use turn.
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(message)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    return [{"role": role, "content": blocks} for role, blocks in turns]


def _blocks(message: ChatMessage) -> list[JsonValue]:
    if message.role is Role.TOOL:
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id,
                 "content": message.text()}]
    blocks: list[JsonValue] = []
    parts = message.parts or ()
    if not parts and message.content:
        blocks.append({"type": "text", "text": message.content})
    for part in parts:
        if isinstance(part, ImagePart):
            blocks.append(_image(part))
        elif part.text:  # the API rejects empty text blocks
            blocks.append({"type": "text", "text": part.text})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": arguments_object(call.arguments_json)})
    return blocks


def _image(part: ImagePart) -> JsonValue:
    image = inline(part)
    if image is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": image.mime_type,
                                            "data": image.base64_data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _tool(name: str, description: str, parameters: JsonObject) -> JsonValue:
    schema: JsonValue = to_json_dict(parameters) if parameters else {"type": "object",
                                                                     "properties": {}}
    tool: dict[str, JsonValue] = {"name": name, "input_schema": schema}
    if description:
        tool["description"] = description
    return tool


def _tool_choice(choice: ToolChoice) -> JsonValue:
    if choice.mode is ToolChoiceMode.NAMED:
        return {"type": "tool", "name": choice.name}
    if choice.mode is ToolChoiceMode.REQUIRED:
        return {"type": "any"}
    return {"type": choice.mode.value}  # "auto" or "none"


def probe_request(spec: ProviderSpec, settings: ConnectorSettings) -> HttpCall:
    """GET /v1/models: lists models, spends no tokens."""
    return HttpCall("GET", f"{base_url(spec)}/v1/models", headers_for(spec, settings))


# --- response ---------------------------------------------------------------------------------


def stop_reason(value: JsonValue) -> FinishReason:
    """The normalized finish reason of a stop_reason."""
    return _STOP.get(text(value), FinishReason.STOP)


def input_tokens(usage: JsonObject) -> int:
    """All prompt tokens: uncached input plus cache writes and cache reads."""
    return (integer(usage.get("input_tokens")) + integer(usage.get("cache_creation_input_tokens"))
            + integer(usage.get("cache_read_input_tokens")))


def from_response(provider: str, body: JsonValue, request: ProviderRequest) -> ChatResult:
    """The normalized result of a Messages API response."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in items(field(body, "content")):
        kind = text(field(block, "type"))
        if kind == "text":
            texts.append(text(field(block, "text")))
        elif kind == "tool_use":
            calls.append(ToolCall(text(field(block, "id")), text(field(block, "name")),
                                  dumps(field(block, "input") or {})))
    usage = obj(field(body, "usage"))
    prompt, completion = input_tokens(usage), integer(usage.get("output_tokens"))
    return ChatResult(text(field(body, "model")) or request.model, "".join(texts),
                      stop_reason(field(body, "stop_reason")),
                      Usage(prompt, completion, prompt + completion), tuple(calls),
                      text(field(body, "id")))


class AnthropicStreamState(StreamState):
    """Messages API stream events → domain events; `message_stop` terminates."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        super().__init__(provider, request)
        self._prompt = 0
        self._completion = 0
        self._tools: dict[int, int] = {}  # content block index → tool-call ordinal

    def on_chunk(self, event: str, data: str) -> list[StreamEvent]:
        """Events from one SSE event; the `event:` name, else the payload's type, decides."""
        payload = self.decode(data)
        if payload is None:
            return []
        kind = text(payload.get("type")) or event
        if kind == "error":
            raise map_error(self.provider, 0, data, {})
        if kind == "message_start":
            self._start(obj(payload.get("message")))
        elif kind == "content_block_start":
            return self._block_start(payload)
        elif kind == "content_block_delta":
            return self._block_delta(payload)
        elif kind == "message_delta":
            self._message_delta(payload)
        elif kind == "message_stop":
            self.done = True
            self.finish_reason = self.finish_reason or FinishReason.STOP
        return []  # ping, content_block_stop and future event types carry no delta

    def _start(self, message: JsonObject) -> None:
        self.model = text(message.get("model")) or self.model
        usage = obj(message.get("usage"))
        self._prompt = input_tokens(usage)
        self._completion = integer(usage.get("output_tokens"))
        self._set_usage()

    def _block_start(self, payload: JsonObject) -> list[StreamEvent]:
        block = obj(payload.get("content_block"))
        if text(block.get("type")) == "tool_use":
            ordinal = self._tools.setdefault(integer(payload.get("index")), len(self._tools))
            return self.tool(ordinal, text(block.get("id")), text(block.get("name")))
        return self.text(text(block.get("text")))

    def _block_delta(self, payload: JsonObject) -> list[StreamEvent]:
        delta = obj(payload.get("delta"))
        kind = text(delta.get("type"))
        if kind == "text_delta":
            return self.text(text(delta.get("text")))
        ordinal = self._tools.get(integer(payload.get("index")))
        if kind == "input_json_delta" and ordinal is not None:
            return self.tool(ordinal, arguments=text(delta.get("partial_json")))
        return []  # thinking and signature deltas are not part of the answer

    def _message_delta(self, payload: JsonObject) -> None:
        reason = field(payload, "delta", "stop_reason")
        if isinstance(reason, str):
            self.finish_reason = stop_reason(reason)
        usage = obj(payload.get("usage"))
        # output_tokens in message_delta is cumulative, not an increment.
        if "output_tokens" in usage:
            self._completion = integer(usage.get("output_tokens"))
        if "input_tokens" in usage:
            self._prompt = input_tokens(usage)
        self._set_usage()

    def _set_usage(self) -> None:
        self.usage = Usage(self._prompt, self._completion, self._prompt + self._completion)


PROTOCOL = WireProtocol(to_request=to_request, from_response=from_response,
                        stream_state=AnthropicStreamState, framing=SseDecoder,
                        probe_request=probe_request, map_error=map_error)
"""This module's wire translation, as the shared HTTP connector uses it."""


class AnthropicConnector(RemoteConnector):
    """Anthropic's Messages API."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        super().__init__(spec, settings, PROTOCOL)
