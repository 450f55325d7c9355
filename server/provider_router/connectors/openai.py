"""OpenAI Chat Completions, also spoken by vLLM, Together, Groq, OpenRouter, LiteLLM & co.

Wire format: https://platform.openai.com/docs/api-reference/chat/create (request and
response) and https://platform.openai.com/docs/api-reference/chat-streaming (chunks).
`openai_compatible` differs only in an optional key, extra headers and `max_tokens`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from provider_router.connectors.errormap import ErrorRule, rule, table_mapper
from provider_router.connectors.http import HttpCall
from provider_router.connectors.media import as_url
from provider_router.connectors.payload import field, integer, items, obj, text, to_json_dict
from provider_router.connectors.remote import RemoteConnector, WireProtocol
from provider_router.connectors.settings import ConnectorSettings, base_url, bearer_headers
from provider_router.connectors.streaming import SseDecoder, StreamState, estimate_usage
from provider_router.domain import (
    ChatMessage,
    ChatResult,
    FinishReason,
    GenerationParams,
    ImagePart,
    JsonObject,
    JsonValue,
    ProviderKind,
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
    ProviderProtocolError,
    ProviderQuotaError,
)

_FINISH: Mapping[str, FinishReason] = MappingProxyType({
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
})

# First match wins; code rules carry no status so they also classify in-stream errors.
# Codes: https://platform.openai.com/docs/guides/error-codes; the markers catch the
# compatible servers (vLLM, Azure, LiteLLM) that only say it in the message.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    rule(ContextLengthError, codes=("context_length_exceeded", "string_above_max_length")),
    rule(ContentPolicyError, codes=("content_policy_violation", "content_filter",
                                    "responsibleaipolicyviolation")),
    # Quota and billing do not clear on retry: a long cooldown of the target (a rate-limit
    # signal, so no breaker opens for the provider's other models), not a retry.
    rule(ProviderQuotaError, codes=("insufficient_quota", "billing_hard_limit_reached")),
    rule(ProviderAuthError, codes=("invalid_api_key", "unsupported_country_region_territory")),
    rule(ContextLengthError, 400, 413, 422,
         markers=("maximum context length", "context length", "context window",
                  "too many tokens", "prompt is too long")),
    rule(ContentPolicyError, 400, markers=("content management policy", "content policy",
                                           "usage policies", "usage policy", "safety system")),
)


map_error = table_mapper(ERROR_TABLE)
"""Classify an OpenAI(-compatible) error response or in-stream error."""


# --- request ----------------------------------------------------------------------------------


def to_request(request: ProviderRequest, spec: ProviderSpec, settings: ConnectorSettings, *,
               stream: bool = False) -> HttpCall:
    """The Chat Completions request for a domain request."""
    chat = request.chat
    body: dict[str, JsonValue] = {
        "model": request.model,
        "messages": [_message(m) for m in chat.messages],
    }
    body.update(_params(chat.params, spec.kind))
    if chat.tools:
        body["tools"] = [_tool(t.name, t.description, t.parameters) for t in chat.tools]
    if chat.tool_choice is not None:
        body["tool_choice"] = _tool_choice(chat.tool_choice)
    fmt = chat.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        body["response_format"] = _response_format(fmt)
    if stream:
        # Without include_usage a stream carries no token counts at all.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    url = f"{base_url(spec)}/chat/completions"
    return HttpCall("POST", url, bearer_headers(spec, settings), body)


def _params(params: GenerationParams, kind: ProviderKind) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    if params.temperature is not None:
        out["temperature"] = params.temperature
    if params.top_p is not None:
        out["top_p"] = params.top_p
    if params.max_tokens is not None:
        # OpenAI deprecated max_tokens (o-series models reject it); compatible servers
        # (vLLM, Groq, Ollama) still expect it.
        key = "max_completion_tokens" if kind is ProviderKind.OPENAI else "max_tokens"
        out[key] = params.max_tokens
    if params.stop:
        out["stop"] = list(params.stop)
    if params.seed is not None:
        out["seed"] = params.seed
    return out


def _message(message: ChatMessage) -> JsonValue:
    if message.role is Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text()}
    out: dict[str, JsonValue] = {"role": message.role.value, "content": _content(message)}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_json or "{}"}}
            for c in message.tool_calls]
        if not message.text():
            out["content"] = None  # an assistant turn that only calls tools has null content
    return out


def _content(message: ChatMessage) -> JsonValue:
    if not message.has_images():
        return message.text()
    parts: list[JsonValue] = []
    for part in message.parts:
        if isinstance(part, ImagePart):
            parts.append({"type": "image_url", "image_url": {"url": as_url(part)}})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def _tool(name: str, description: str, parameters: JsonObject) -> JsonValue:
    function: dict[str, JsonValue] = {"name": name}
    if description:
        function["description"] = description
    if parameters:
        function["parameters"] = to_json_dict(parameters)
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> JsonValue:
    if choice.mode is ToolChoiceMode.NAMED:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode.value  # "auto", "none" and "required" are OpenAI's own words


def _response_format(fmt: ResponseFormat) -> JsonValue:
    if fmt.type is ResponseFormatType.JSON_SCHEMA:
        schema: JsonValue = to_json_dict(fmt.json_schema or {})
        return {"type": "json_schema",
                "json_schema": {"name": fmt.schema_name or "response", "schema": schema}}
    return {"type": "json_object"}


def probe_request(spec: ProviderSpec, settings: ConnectorSettings) -> HttpCall:
    """GET {base}/models: lists models, spends no tokens."""
    return HttpCall("GET", f"{base_url(spec)}/models", bearer_headers(spec, settings))


# --- response ---------------------------------------------------------------------------------


def finish_reason(value: JsonValue, has_tool_calls: bool) -> FinishReason:
    """The normalized finish reason; unknown values from compatible servers count as stop."""
    reason = _FINISH.get(text(value), FinishReason.STOP)
    if has_tool_calls and reason is FinishReason.STOP:
        return FinishReason.TOOL_CALLS  # some compatible servers say "stop" after tool calls
    return reason


def usage_from(value: JsonValue) -> Usage | None:
    """Provider-reported usage, or None when absent."""
    usage = obj(value)
    if "prompt_tokens" not in usage and "completion_tokens" not in usage:
        return None
    prompt = integer(usage.get("prompt_tokens"))
    completion = integer(usage.get("completion_tokens"))
    total = integer(usage.get("total_tokens")) or prompt + completion
    return Usage(prompt, completion, total)


def from_response(provider: str, body: JsonValue, request: ProviderRequest) -> ChatResult:
    """The normalized result of a Chat Completions response."""
    choices = items(field(body, "choices"))
    if not choices:
        raise ProviderProtocolError(provider, "response has no choices")
    message = obj(field(choices[0], "message"))
    calls = tuple(
        ToolCall(text(obj(c).get("id")), text(field(c, "function", "name")),
                 text(field(c, "function", "arguments")))
        for c in items(message.get("tool_calls")))
    content = _response_text(message.get("content"))
    reason = finish_reason(field(choices[0], "finish_reason"), bool(calls))
    refusal = text(message.get("refusal"))
    if refusal and not content:
        content, reason = refusal, FinishReason.CONTENT_FILTER
    usage = usage_from(field(body, "usage"))
    if usage is None:
        usage = estimate_usage(request, content + "".join(c.arguments_json for c in calls))
    return ChatResult(text(field(body, "model")) or request.model, content, reason, usage,
                      calls, text(field(body, "id")))


def _response_text(content: JsonValue) -> str:
    if isinstance(content, list):  # a few compatible servers answer with content parts
        return "".join(text(obj(p).get("text")) for p in content)
    return text(content)


class OpenAIStreamState(StreamState):
    """Chat Completions chunks → events; `data: [DONE]` terminates."""

    def __init__(self, provider: str, request: ProviderRequest) -> None:
        super().__init__(provider, request)
        self._saw_tools = False

    def on_chunk(self, event: str, data: str) -> list[StreamEvent]:
        """Events from one `data:` payload."""
        if data[:1] != "{" and data.strip() == "[DONE]":
            self.done = True
            if self.finish_reason is None:  # a server that never sent finish_reason
                self.finish_reason = finish_reason("stop", self._saw_tools)
            return []
        chunk = self.decode(data)
        if chunk is None:
            return []
        if chunk.get("error"):
            raise map_error(self.provider, 0, data, {})
        self.model = text(chunk.get("model")) or self.model
        usage = chunk.get("usage")
        if usage is not None:  # most chunks carry none (or null): skip the parse
            self.usage = usage_from(usage) or self.usage
        choices = items(chunk.get("choices"))
        if len(choices) == 1:  # n=1, nearly always: no list to merge into
            only = obj(choices[0])
            return self._choice(only) if integer(only.get("index")) == 0 else []
        events: list[StreamEvent] = []
        for choice in choices:
            if integer(obj(choice).get("index")) == 0:
                events.extend(self._choice(obj(choice)))
        return events

    def _choice(self, choice: JsonObject) -> list[StreamEvent]:
        delta = obj(choice.get("delta"))
        events = self.text(text(delta.get("content")))
        calls = delta.get("tool_calls")
        for call in items(calls) if calls else ():
            self._saw_tools = True
            fn = obj(field(call, "function"))
            events.extend(self.tool(integer(field(call, "index")), text(field(call, "id")),
                                    text(fn.get("name")), text(fn.get("arguments"))))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reason = finish_reason(reason, self._saw_tools)
        return events


PROTOCOL = WireProtocol(to_request=to_request, from_response=from_response,
                        stream_state=OpenAIStreamState, framing=SseDecoder,
                        probe_request=probe_request, map_error=map_error)
"""This module's wire translation, as the shared HTTP connector uses it."""


class OpenAIConnector(RemoteConnector):
    """OpenAI and OpenAI-compatible providers."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings) -> None:
        super().__init__(spec, settings, PROTOCOL)
