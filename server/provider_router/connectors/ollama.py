"""Ollama's native chat API.

Wire format: https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
(`POST /api/chat`, NDJSON streaming where the final line has `"done": true` plus
`done_reason`, `prompt_eval_count` and `eval_count`; tool-call arguments are JSON objects,
not strings; images are a list of base64 strings) and `GET /api/tags` (list local models).
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
    text,
    to_json_dict,
)
from provider_router.connectors.remote import RemoteConnector, WireProtocol
from provider_router.connectors.settings import ConnectorSettings, base_url, bearer_headers
from provider_router.connectors.streaming import NdjsonDecoder, StreamState, estimate_usage
from provider_router.domain import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    FinishReason,
    GenerationParams,
    ImagePart,
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
from provider_router.errors import ContextLengthError, ProviderRejectedError

_DONE_REASON: Mapping[str, FinishReason] = MappingProxyType({
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
})

ERROR_TABLE: tuple[ErrorRule, ...] = (
    rule(ContextLengthError, 400, 500, markers=("context length", "context window",
                                                "exceeds the available context")),
)


map_error = table_mapper(ERROR_TABLE)
"""Classify an Ollama error ({"error": "text"}) by status and message."""


# --- request ----------------------------------------------------------------------------------


def to_request(request: ProviderRequest, spec: ProviderSpec, settings: ConnectorSettings, *,
               stream: bool = False) -> HttpCall:
    """The /api/chat request for a domain request."""
    chat = request.chat
    # Ollama streams unless told otherwise, so `stream` is always explicit.
    body: dict[str, JsonValue] = {
        "model": request.model,
        "messages": _messages(spec.name, chat.messages),
        "stream": stream,
    }
    options = _options(chat.params)
    if options:
        body["options"] = options
    fmt = chat.response_format
    if fmt is not None and fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
        body["format"] = to_json_dict(fmt.json_schema)
    elif fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        body["format"] = "json"
    if _tools_allowed(chat):
        body["tools"] = [
            {"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": to_json_dict(t.parameters) or {"type": "object", "properties": {}},
            }} for t in chat.tools]
    return HttpCall("POST", f"{base_url(spec)}/api/chat", bearer_headers(spec, settings), body)


def _tools_allowed(chat: ChatRequest) -> bool:
    # Ollama has no tool_choice; "none" is honoured by not offering the tools at all.
    return bool(chat.tools) and not (
        chat.tool_choice is not None and chat.tool_choice.mode is ToolChoiceMode.NONE)


def _options(params: GenerationParams) -> dict[str, JsonValue]:
    options: dict[str, JsonValue] = {}
    if params.temperature is not None:
        options["temperature"] = params.temperature
    if params.top_p is not None:
        options["top_p"] = params.top_p
    if params.max_tokens is not None:
        options["num_predict"] = params.max_tokens
    if params.stop:
        options["stop"] = list(params.stop)
    if params.seed is not None:
        options["seed"] = params.seed
    return options


def _messages(provider: str, messages: tuple[ChatMessage, ...]) -> list[JsonValue]:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    return [_message(provider, m, names) for m in messages]


def _message(provider: str, message: ChatMessage, names: Mapping[str, str]) -> JsonValue:
    out: dict[str, JsonValue] = {"role": message.role.value, "content": message.text()}
    if message.role is Role.TOOL:
        out["tool_name"] = message.name or names.get(message.tool_call_id, "")
    images = [_image(provider, p) for p in message.parts if isinstance(p, ImagePart)]
    if images:
        out["images"] = list(images)
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": arguments_object(c.arguments_json)}}
            for c in message.tool_calls]
    return out


def _image(provider: str, part: ImagePart) -> JsonValue:
    image = inline(part)
    if image is None:
        # Ollama never fetches URLs; a remote image is the caller's to inline.
        raise ProviderRejectedError(provider, "Ollama accepts inline (base64) images only")
    return image.base64_data


def probe_request(spec: ProviderSpec, settings: ConnectorSettings) -> HttpCall:
    """GET /api/tags: lists local models, spends no tokens."""
    return HttpCall("GET", f"{base_url(spec)}/api/tags", bearer_headers(spec, settings))


# --- response ---------------------------------------------------------------------------------


def tool_calls_of(message: Json, first: int = 0) -> list[ToolCall]:
    """A message's tool calls with arguments re-encoded as JSON text.

    Older Ollama versions send no call ids; the caller needs one to send results back, so
    `call_{n}` is made up, numbering from `first`.
    """
    calls: list[ToolCall] = []
    for i, call in enumerate(items(field(message, "tool_calls")), start=first):
        function = obj(field(call, "function"))
        call_id = text(field(call, "id")) or f"call_{i}"
        calls.append(ToolCall(call_id, text(function.get("name")),
                              dumps(function.get("arguments") or {})))
    return calls


def done_reason(value: JsonValue, has_tool_calls: bool) -> FinishReason:
    """The normalized finish reason of a final chunk."""
    reason = _DONE_REASON.get(text(value), FinishReason.STOP)
    return FinishReason.TOOL_CALLS if has_tool_calls and reason is FinishReason.STOP else reason


def usage_from(final: Json) -> Usage | None:
    """Token counts of a final chunk, or None when it carries none."""
    chunk = obj(final)
    if "eval_count" not in chunk and "prompt_eval_count" not in chunk:
        return None
    prompt, completion = integer(chunk.get("prompt_eval_count")), integer(chunk.get("eval_count"))
    return Usage(prompt, completion, prompt + completion)


def from_response(provider: str, body: JsonValue, request: ProviderRequest) -> ChatResult:
    """The normalized result of a non-streaming /api/chat response."""
    message = obj(field(body, "message"))
    content = text(message.get("content"))
    calls = tuple(tool_calls_of(message))
    usage = usage_from(body) or estimate_usage(
        request, content + "".join(c.arguments_json for c in calls))
    return ChatResult(text(field(body, "model")) or request.model, content,
                      done_reason(field(body, "done_reason"), bool(calls)), usage, calls)


class OllamaStreamState(StreamState):
    """/api/chat NDJSON lines → events; the line with `"done": true` terminates."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        super().__init__(provider, request)
        self._calls = 0

    def on_chunk(self, event: str, data: str) -> list[StreamEvent]:
        """Events from one line."""
        chunk = self.decode(data)
        if chunk is None:
            return []
        if chunk.get("error"):
            raise map_error(self.provider, 0, data, {})
        self.model = text(chunk.get("model")) or self.model
        message = obj(chunk.get("message"))
        events = self.text(text(message.get("content")))
        for call in tool_calls_of(message, first=self._calls):
            # Ollama sends each tool call whole in one chunk, never in fragments.
            events.extend(self.tool(self._calls, call.id, call.name, call.arguments_json))
            self._calls += 1
        if chunk.get("done") is True:
            self.done = True
            self.finish_reason = done_reason(chunk.get("done_reason"), self._calls > 0)
            self.usage = usage_from(chunk)
        return events


PROTOCOL = WireProtocol(to_request=to_request, from_response=from_response,
                        stream_state=OllamaStreamState, framing=NdjsonDecoder,
                        probe_request=probe_request, map_error=map_error)
"""This module's wire translation, as the shared HTTP connector uses it."""


class OllamaConnector(RemoteConnector):
    """A local or remote Ollama server."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        super().__init__(spec, settings, PROTOCOL)
