"""Protobuf → domain: the requests, validated; and, re-exported, the answers (responses.py).

`to_domain` functions validate what the type system of protobuf cannot (enum values in range,
oneofs set, required fields) and raise InvalidRequestError with one violation per field.

The common request (text messages, routing by model only, no parameters or constraints) takes
fast paths: one ListFields call tells a model-only RoutingOptions from the rest, absent
sub-messages are not even read and map to shared immutable defaults, and field paths for
violations are only formatted when something is actually wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from provider_router import domain as d
from provider_router.api.enums import (
    CAPABILITIES,
    FORMATS,
    KINDS,
    ROLES,
    STRATEGIES,
    TOOL_CHOICES,
)
from provider_router.api.hedging import hedge_to_domain
from provider_router.api.responses import chat_response_to_proto as chat_response_to_proto
from provider_router.api.responses import decision_to_proto as decision_to_proto
from provider_router.api.responses import duration as duration
from provider_router.api.responses import spec_to_proto as spec_to_proto
from provider_router.api.responses import status_to_proto as status_to_proto
from provider_router.api.responses import stream_event_to_proto as stream_event_to_proto
from provider_router.errors import FieldViolation, InvalidRequestError
from provider_router.v1 import router_pb2 as pb
from provider_router.validation import MAX_MODEL_NAME, MAX_MODELS, NAME_PATTERN

E = TypeVar("E")

MAX_MESSAGES = 10_000


class Violations:
    """Collects field violations while converting one request."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record one problem with one field."""
        self.items.append(FieldViolation(field, description))

    def enum(self, table: dict[int, E], value: int, field: str, what: str) -> E | None:
        """Look up an enum number, recording a violation for unspecified/unknown values."""
        found = table.get(value)
        if found is None:
            self.add(field, f"{what} must be set to a known value, got {value}")
        return found

    def raise_if_any(self, message: str) -> None:
        """Raise InvalidRequestError carrying every violation, if there are any."""
        if self.items:
            raise InvalidRequestError(message, tuple(self.items))


# --- requests → domain ----------------------------------------------------------------------


def struct_to_json(value: struct_pb2.Struct) -> dict[str, d.JsonValue]:
    """A protobuf Struct as a plain JSON object."""
    result: dict[str, d.JsonValue] = json_format.MessageToDict(value)
    return result


def _json_schema(value: struct_pb2.Struct, field: str, v: Violations
                 ) -> dict[str, d.JsonValue]:
    """A Struct as JSON, or a violation: JSON has no NaN or Infinity, which a Struct's
    number_value can hold (json_format refuses them with ValueError)."""
    try:
        return struct_to_json(value)
    except ValueError:
        v.add(field, "must be valid JSON: numbers must be finite (no NaN or Infinity)")
        return {}


def _capabilities(values: Iterable[int], field: str, v: Violations) -> frozenset[d.Capability]:
    found = (v.enum(CAPABILITIES, c, f"{field}[{i}]", "capability") for i, c in enumerate(values))
    return frozenset(c for c in found if c is not None)


_TOOL = d.Role.TOOL
_NO_CONSTRAINTS = d.RoutingConstraints()
_NO_PARAMS = d.GenerationParams()
_NO_CAPABILITIES: frozenset[d.Capability] = frozenset()
_NO_PROVIDERS: frozenset[str] = frozenset()
_CONSTRAINT_FIELDS = ("max_input_per_mtok", "max_output_per_mtok", "max_cost_usd",
                      "max_latency_ms", "min_context_window", "estimated_prompt_tokens")


def _constraints(c: pb.RoutingConstraints, v: Violations) -> d.RoutingConstraints:
    constraints = d.RoutingConstraints(
        max_input_per_mtok=c.max_input_per_mtok if c.HasField("max_input_per_mtok") else None,
        max_output_per_mtok=c.max_output_per_mtok if c.HasField("max_output_per_mtok") else None,
        max_cost_usd=c.max_cost_usd if c.HasField("max_cost_usd") else None,
        max_latency_ms=c.max_latency_ms if c.HasField("max_latency_ms") else None,
        min_context_window=c.min_context_window if c.HasField("min_context_window") else None,
        estimated_prompt_tokens=(
            c.estimated_prompt_tokens if c.HasField("estimated_prompt_tokens") else None
        ),
    )
    for name in _CONSTRAINT_FIELDS:
        value = getattr(constraints, name)
        if value is not None and value < 0:
            v.add(f"routing.constraints.{name}", "must not be negative")
    return constraints


def routing_to_domain(msg: pb.RoutingOptions, v: Violations) -> d.RoutingOptions:
    """RoutingOptions → domain."""
    present = msg.ListFields()
    # Most requests name a model and nothing else. One ListFields call says so; probing the
    # nine fields one by one builds a wrapper object per repeated or map field read.
    if not present or (len(present) == 1 and present[0][0].name == "model"):
        return d.RoutingOptions(msg.model.strip(), _NO_CAPABILITIES, None, {}, (), (),
                                _NO_PROVIDERS, _NO_CONSTRAINTS, "")
    return _routing(msg, v)


def _routing(msg: pb.RoutingOptions, v: Violations) -> d.RoutingOptions:
    strategy = None
    if msg.strategy != pb.STRATEGY_UNSPECIFIED:
        strategy = v.enum(STRATEGIES, msg.strategy, "routing.strategy", "strategy")
    return d.RoutingOptions(
        model=msg.model.strip(),
        capabilities=(_capabilities(msg.capabilities, "routing.capabilities", v)
                      if msg.capabilities else _NO_CAPABILITIES),
        strategy=strategy,
        attributes=dict(msg.attributes) if msg.attributes else {},
        # Empty repeated fields are tested first: iterating one costs a microsecond in upb.
        labels=tuple(msg.labels) if msg.labels else (),
        prefer_providers=tuple(msg.prefer_providers) if msg.prefer_providers else (),
        exclude_providers=frozenset(msg.exclude_providers) if msg.exclude_providers
        else _NO_PROVIDERS,
        constraints=(_constraints(msg.constraints, v) if msg.HasField("constraints")
                     else _NO_CONSTRAINTS),
        affinity_key=msg.affinity_key,
        fallbacks=_fallbacks(msg.fallbacks, v) if msg.fallbacks else (),
        hedge=hedge_to_domain(msg.hedge, v.add) if msg.HasField("hedge") else None,
    )


MAX_FALLBACKS = 16


def _fallbacks(targets: Sequence[pb.RouteTarget], v: Violations) -> tuple[d.RouteTarget, ...]:
    """routing.fallbacks → targets; each needs a well-formed provider name and a model."""
    if len(targets) > MAX_FALLBACKS:
        v.add("routing.fallbacks", f"at most {MAX_FALLBACKS} targets, got {len(targets)}")
    found: list[d.RouteTarget] = []
    for i, target in enumerate(targets):
        provider, model = target.provider.strip(), target.model.strip()
        if not provider:
            v.add(f"routing.fallbacks[{i}].provider", "is required")
        elif not NAME_PATTERN.fullmatch(provider):
            v.add(f"routing.fallbacks[{i}].provider", "must be a provider name: lowercase "
                  "letters, digits, '_' and '-', 1 to 63 characters")
        if not model:
            v.add(f"routing.fallbacks[{i}].model", "is required")
        elif len(model) > MAX_MODEL_NAME or any(ch.isspace() for ch in model):
            v.add(f"routing.fallbacks[{i}].model",
                  f"must be a model name: no whitespace, at most {MAX_MODEL_NAME} characters")
        found.append(d.RouteTarget(provider, model))
    return tuple(found)


def _part(msg: pb.ContentPart, field: str, v: Violations) -> d.ContentPart | None:
    kind = msg.WhichOneof("part")
    if kind == "text":
        return d.TextPart(msg.text)
    if kind == "image":
        image = msg.image
        source = image.WhichOneof("source")
        if source == "url":
            return d.ImagePart(url=image.url, mime_type=image.mime_type)
        if source == "data":
            if not image.mime_type:
                v.add(f"{field}.image.mime_type", "is required with image data")
            return d.ImagePart(data=image.data, mime_type=image.mime_type)
        v.add(f"{field}.image", "needs a url or data")
        return None
    v.add(field, "needs text or an image")
    return None


def message_to_domain(msg: pb.ChatMessage, field: str, v: Violations) -> d.ChatMessage | None:
    """ChatMessage → domain; None (with violations recorded) when invalid."""
    role = v.enum(ROLES, msg.role, f"{field}.role", "role")
    parts = tuple(
        p for i, part in enumerate(msg.content_parts)
        if (p := _part(part, f"{field}.content_parts[{i}]", v)) is not None
    )
    if role is d.Role.TOOL and not msg.tool_call_id:
        v.add(f"{field}.tool_call_id", "is required for a tool message")
    if role is None:
        return None
    return d.ChatMessage(
        role=role,
        content=msg.content,
        parts=parts,
        tool_calls=tuple(d.ToolCall(c.id, c.name, c.arguments_json) for c in msg.tool_calls),
        tool_call_id=msg.tool_call_id,
        name=msg.name,
    )


def _plain_message(msg: pb.ChatMessage) -> d.ChatMessage | None:
    """A text-only message with a known role other than tool: nothing to validate."""
    role = ROLES.get(msg.role)
    if role is None or role is _TOOL or msg.content_parts or msg.tool_calls:
        return None
    return d.ChatMessage(role, msg.content, (), (), msg.tool_call_id, msg.name)


def messages_to_domain(
    messages: Sequence[pb.ChatMessage], v: Violations, *, required: bool
) -> tuple[d.ChatMessage, ...]:
    """The conversation → domain, checking it is present and bounded."""
    if required and not messages:
        v.add("messages", "must contain at least one message")
    if len(messages) > MAX_MESSAGES:
        v.add("messages", f"at most {MAX_MESSAGES} messages")
        return ()
    converted: list[d.ChatMessage] = []
    for i, msg in enumerate(messages):
        message = _plain_message(msg) or message_to_domain(msg, f"messages[{i}]", v)
        if message is not None:
            converted.append(message)
    return tuple(converted)


def _params(msg: pb.GenerationParameters, v: Violations) -> d.GenerationParams:
    params = d.GenerationParams(
        temperature=msg.temperature if msg.HasField("temperature") else None,
        top_p=msg.top_p if msg.HasField("top_p") else None,
        max_tokens=msg.max_tokens if msg.HasField("max_tokens") else None,
        stop=tuple(msg.stop_sequences),
        seed=msg.seed if msg.HasField("seed") else None,
    )
    if params.temperature is not None and not 0.0 <= params.temperature <= 2.0:
        v.add("parameters.temperature", "must be between 0 and 2")
    if params.top_p is not None and not 0.0 <= params.top_p <= 1.0:
        v.add("parameters.top_p", "must be between 0 and 1")
    if params.max_tokens is not None and params.max_tokens <= 0:
        v.add("parameters.max_tokens", "must be positive")
    return params


def _tools(tools: Sequence[pb.Tool], v: Violations) -> tuple[d.ToolDefinition, ...]:
    result = []
    for i, tool in enumerate(tools):
        if not tool.name:
            v.add(f"tools[{i}].name", "must not be empty")
        schema = _json_schema(tool.parameters, f"tools[{i}].parameters", v)
        result.append(d.ToolDefinition(tool.name, tool.description, schema))
    return tuple(result)


def _tool_choice(msg: pb.ToolChoice, v: Violations) -> d.ToolChoice | None:
    if msg.mode == pb.TOOL_CHOICE_MODE_UNSPECIFIED:
        return None
    mode = v.enum(TOOL_CHOICES, msg.mode, "tool_choice.mode", "tool choice mode")
    if mode is d.ToolChoiceMode.NAMED and not msg.name:
        v.add("tool_choice.name", "is required with TOOL_CHOICE_MODE_NAMED")
    return d.ToolChoice(mode, msg.name) if mode is not None else None


def _response_format(msg: pb.ResponseFormat, v: Violations) -> d.ResponseFormat | None:
    if msg.type == pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED:
        return None
    kind = v.enum(FORMATS, msg.type, "response_format.type", "response format")
    schema = (_json_schema(msg.json_schema, "response_format.json_schema", v)
              if msg.HasField("json_schema") else None)
    if kind is d.ResponseFormatType.JSON_SCHEMA and schema is None:
        v.add("response_format.json_schema", "is required with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
    if kind is None:
        return None
    return d.ResponseFormat(kind, schema, msg.schema_name)


def chat_to_domain(msg: pb.ChatRequest | pb.StreamChatRequest, *, stream: bool) -> d.ChatRequest:
    """ChatRequest or StreamChatRequest → domain, or InvalidRequestError."""
    v = Violations()
    messages = messages_to_domain(msg.messages, v, required=True)
    routing = routing_to_domain(msg.routing, v)
    # An absent sub-message is not read at all: reading one builds a wrapper for nothing.
    params = _params(msg.parameters, v) if msg.HasField("parameters") else _NO_PARAMS
    tools = _tools(msg.tools, v) if msg.tools else ()
    tool_choice = _tool_choice(msg.tool_choice, v) if msg.HasField("tool_choice") else None
    response_format = (_response_format(msg.response_format, v)
                       if msg.HasField("response_format") else None)
    metadata = dict(msg.metadata) if msg.metadata else {}
    v.raise_if_any("invalid chat request")
    return d.ChatRequest(messages, routing, params, tools, tool_choice, response_format,
                         metadata, stream)


def route_to_domain(msg: pb.RouteRequest) -> tuple[d.ChatRequest, float | None]:
    """RouteRequest → (domain request, evaluation time as epoch seconds or None)."""
    v = Violations()
    request = d.ChatRequest(
        messages=messages_to_domain(msg.messages, v, required=False),
        routing=routing_to_domain(msg.routing, v),
        stream=msg.stream,
    )
    at = _timestamp(msg.evaluation_time, v) if msg.HasField("evaluation_time") else None
    v.raise_if_any("invalid route request")
    return request, at


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_S = -62_135_596_800
_MAX_TIMESTAMP_S = 253_402_300_799


def _timestamp(value: Timestamp, v: Violations) -> float | None:
    """Epoch seconds of a valid Timestamp, else a violation (ToDatetime raises ValueError)."""
    if (not _MIN_TIMESTAMP_S <= value.seconds <= _MAX_TIMESTAMP_S
            or not 0 <= value.nanos <= 999_999_999):
        v.add("evaluation_time", "must be a valid Timestamp (0001-01-01 to 9999-12-31, "
                                 "nanos from 0 to 999999999)")
        return None
    return value.seconds + value.nanos / 1e9


def _seconds(duration: Duration, present: bool) -> float | None:
    # Plain arithmetic: ToTimedelta raises on out-of-range fields; the spec validation
    # (validation.py) then judges the number like any other.
    return duration.seconds + duration.nanos / 1e9 if present else None


def _timeouts(msg: pb.ProviderTimeouts) -> d.ProviderTimeouts:
    return d.ProviderTimeouts(
        connect=_seconds(msg.connect, msg.HasField("connect")),
        first_token=_seconds(msg.first_token, msg.HasField("first_token")),
        idle=_seconds(msg.idle, msg.HasField("idle")),
        total=_seconds(msg.total, msg.HasField("total")),
    )


def _model_spec(msg: pb.ModelSpec, field: str, v: Violations) -> d.ModelSpec:
    return d.ModelSpec(
        name=msg.name,
        input_per_mtok=msg.input_per_mtok if msg.HasField("input_per_mtok") else None,
        output_per_mtok=msg.output_per_mtok if msg.HasField("output_per_mtok") else None,
        context_window=msg.context_window,
        capabilities=_capabilities(msg.capabilities, f"{field}.capabilities", v),
    )


def spec_to_domain(msg: pb.ProviderSpec) -> d.ProviderSpec:
    """ProviderSpec → domain (shape only; validation.py checks values)."""
    v = Violations()
    kind = v.enum(KINDS, msg.kind, "provider.kind", "kind")
    if len(msg.models) > MAX_MODELS:
        # Refused before converting: 100,000 models would cost seconds to convert only to
        # be refused by validation.py anyway.
        v.add("provider.models", f"must list at most {MAX_MODELS} models")
        v.raise_if_any("invalid provider spec")
    models = tuple(_model_spec(m, f"provider.models[{i}]", v) for i, m in enumerate(msg.models))
    capabilities = _capabilities(msg.capabilities, "provider.capabilities", v)
    v.raise_if_any("invalid provider spec")
    assert kind is not None  # raise_if_any guarantees it
    return d.ProviderSpec(
        name=msg.name,
        kind=kind,
        base_url=msg.base_url,
        api_key_env=msg.api_key_env,
        api_key=d.Secret(msg.api_key) if msg.api_key else None,
        models=models,
        capabilities=capabilities or frozenset({d.Capability.CHAT}),
        priority=msg.priority,
        weight=msg.weight if msg.HasField("weight") else 1.0,
        max_concurrent=msg.max_concurrent,
        rate_limit_rpm=msg.rate_limit_rpm,
        rate_limit_tpm=msg.rate_limit_tpm,
        timeouts=_timeouts(msg.timeouts),
        labels=tuple(msg.labels),
        enabled=msg.enabled if msg.HasField("enabled") else True,
        headers=dict(msg.headers),
        command=d.CommandOptions(tuple(msg.command.argv), tuple(msg.command.required_envs),
                                 msg.command.read_output_file) if msg.HasField("command") else None,
        mock=d.MockOptions(
            latency=_seconds(msg.mock.latency, msg.mock.HasField("latency")) or 0.0,
            chunk_count=msg.mock.chunk_count or 4,
            reply=msg.mock.reply,
            fail_status=msg.mock.fail_status,
        ) if msg.HasField("mock") else None,
    )


def metrics_to_domain(msg: pb.UpdateMetricsRequest) -> d.MetricsReport:
    """UpdateMetricsRequest → domain."""
    if not msg.provider:
        raise InvalidRequestError("invalid metrics report",
                                  (FieldViolation("provider", "must not be empty"),))
    return d.MetricsReport(
        provider=msg.provider,
        avg_latency_ms=msg.avg_latency_ms if msg.HasField("avg_latency_ms") else None,
        error_rate=msg.error_rate if msg.HasField("error_rate") else None,
        load=msg.load if msg.HasField("load") else None,
        ttl_s=_seconds(msg.ttl, msg.HasField("ttl")),
    )


