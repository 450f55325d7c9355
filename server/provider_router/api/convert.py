"""Protobuf ↔ domain conversion: the only module that knows both shapes.

`to_domain` functions validate what the type system of protobuf cannot (enum values in range,
oneofs set, required fields) and raise InvalidRequestError with one violation per field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from provider_router import domain as d
from provider_router.errors import FieldViolation, InvalidRequestError
from provider_router.v1 import router_pb2 as pb

E = TypeVar("E")

# Enum tables: proto number ↔ domain enum. Zero (UNSPECIFIED) is absent on purpose.
CAPABILITIES: dict[int, d.Capability] = {
    pb.CAPABILITY_CHAT: d.Capability.CHAT,
    pb.CAPABILITY_STREAMING: d.Capability.STREAMING,
    pb.CAPABILITY_VISION: d.Capability.VISION,
    pb.CAPABILITY_TOOLS: d.Capability.TOOLS,
    pb.CAPABILITY_JSON: d.Capability.JSON,
    pb.CAPABILITY_EMBEDDINGS: d.Capability.EMBEDDINGS,
    pb.CAPABILITY_REASONING: d.Capability.REASONING,
}
STRATEGIES: dict[int, d.Strategy] = {
    pb.STRATEGY_EXPLICIT: d.Strategy.EXPLICIT,
    pb.STRATEGY_DEFAULT: d.Strategy.DEFAULT,
    pb.STRATEGY_ROUND_ROBIN: d.Strategy.ROUND_ROBIN,
    pb.STRATEGY_WEIGHTED: d.Strategy.WEIGHTED,
    pb.STRATEGY_LEAST_LOADED: d.Strategy.LEAST_LOADED,
    pb.STRATEGY_LATENCY: d.Strategy.LATENCY,
    pb.STRATEGY_COST: d.Strategy.COST,
    pb.STRATEGY_CAPABILITY: d.Strategy.CAPABILITY,
    pb.STRATEGY_RULES: d.Strategy.RULES,
    pb.STRATEGY_FAILOVER: d.Strategy.FAILOVER,
    pb.STRATEGY_AFFINITY: d.Strategy.AFFINITY,
}
KINDS: dict[int, d.ProviderKind] = {
    pb.PROVIDER_KIND_OPENAI: d.ProviderKind.OPENAI,
    pb.PROVIDER_KIND_OPENAI_COMPATIBLE: d.ProviderKind.OPENAI_COMPATIBLE,
    pb.PROVIDER_KIND_ANTHROPIC: d.ProviderKind.ANTHROPIC,
    pb.PROVIDER_KIND_GEMINI: d.ProviderKind.GEMINI,
    pb.PROVIDER_KIND_OLLAMA: d.ProviderKind.OLLAMA,
    pb.PROVIDER_KIND_COMMAND: d.ProviderKind.COMMAND,
    pb.PROVIDER_KIND_MOCK: d.ProviderKind.MOCK,
}
ROLES: dict[int, d.Role] = {
    pb.ROLE_SYSTEM: d.Role.SYSTEM,
    pb.ROLE_USER: d.Role.USER,
    pb.ROLE_ASSISTANT: d.Role.ASSISTANT,
    pb.ROLE_TOOL: d.Role.TOOL,
}
FINISH_REASONS: dict[d.FinishReason, pb.FinishReason.ValueType] = {
    d.FinishReason.STOP: pb.FINISH_REASON_STOP,
    d.FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    d.FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    d.FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    d.FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
OUTCOMES: dict[d.AttemptOutcome, pb.AttemptOutcome.ValueType] = {
    d.AttemptOutcome.SUCCESS: pb.ATTEMPT_OUTCOME_SUCCESS,
    d.AttemptOutcome.PROVIDER_ERROR: pb.ATTEMPT_OUTCOME_PROVIDER_ERROR,
    d.AttemptOutcome.RATE_LIMITED: pb.ATTEMPT_OUTCOME_RATE_LIMITED,
    d.AttemptOutcome.TIMEOUT: pb.ATTEMPT_OUTCOME_TIMEOUT,
    d.AttemptOutcome.REJECTED: pb.ATTEMPT_OUTCOME_REJECTED,
    d.AttemptOutcome.AUTH_FAILED: pb.ATTEMPT_OUTCOME_AUTH_FAILED,
    d.AttemptOutcome.SKIPPED: pb.ATTEMPT_OUTCOME_SKIPPED,
    d.AttemptOutcome.STREAM_BROKEN: pb.ATTEMPT_OUTCOME_STREAM_BROKEN,
    d.AttemptOutcome.CANCELLED: pb.ATTEMPT_OUTCOME_CANCELLED,
    d.AttemptOutcome.CONNECTION_FAILED: pb.ATTEMPT_OUTCOME_CONNECTION_FAILED,
}
EXCLUSIONS: dict[d.ExclusionReason, pb.ExclusionReason.ValueType] = {
    d.ExclusionReason.EXCLUDED_BY_CALLER: pb.EXCLUSION_REASON_EXCLUDED_BY_CALLER,
    d.ExclusionReason.DISABLED: pb.EXCLUSION_REASON_DISABLED,
    d.ExclusionReason.BREAKER_OPEN: pb.EXCLUSION_REASON_BREAKER_OPEN,
    d.ExclusionReason.RATE_LIMITED: pb.EXCLUSION_REASON_RATE_LIMITED,
    d.ExclusionReason.CONCURRENCY_LIMIT: pb.EXCLUSION_REASON_CONCURRENCY_LIMIT,
    d.ExclusionReason.MISSING_CAPABILITY: pb.EXCLUSION_REASON_MISSING_CAPABILITY,
    d.ExclusionReason.PRICE: pb.EXCLUSION_REASON_PRICE,
    d.ExclusionReason.CONTEXT_WINDOW: pb.EXCLUSION_REASON_CONTEXT_WINDOW,
    d.ExclusionReason.LATENCY: pb.EXCLUSION_REASON_LATENCY,
    d.ExclusionReason.UNHEALTHY: pb.EXCLUSION_REASON_UNHEALTHY,
    d.ExclusionReason.UNAVAILABLE: pb.EXCLUSION_REASON_UNAVAILABLE,
}
HEALTH: dict[d.HealthState, pb.HealthState.ValueType] = {
    d.HealthState.UNKNOWN: pb.HEALTH_STATE_UNSPECIFIED,
    d.HealthState.HEALTHY: pb.HEALTH_STATE_HEALTHY,
    d.HealthState.DEGRADED: pb.HEALTH_STATE_DEGRADED,
    d.HealthState.UNHEALTHY: pb.HEALTH_STATE_UNHEALTHY,
}
BREAKER: dict[d.BreakerState, pb.BreakerState.ValueType] = {
    d.BreakerState.CLOSED: pb.BREAKER_STATE_CLOSED,
    d.BreakerState.OPEN: pb.BREAKER_STATE_OPEN,
    d.BreakerState.HALF_OPEN: pb.BREAKER_STATE_HALF_OPEN,
}
FORMATS: dict[int, d.ResponseFormatType] = {
    pb.RESPONSE_FORMAT_TYPE_TEXT: d.ResponseFormatType.TEXT,
    pb.RESPONSE_FORMAT_TYPE_JSON: d.ResponseFormatType.JSON,
    pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: d.ResponseFormatType.JSON_SCHEMA,
}
TOOL_CHOICES: dict[int, d.ToolChoiceMode] = {
    pb.TOOL_CHOICE_MODE_AUTO: d.ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_NONE: d.ToolChoiceMode.NONE,
    pb.TOOL_CHOICE_MODE_REQUIRED: d.ToolChoiceMode.REQUIRED,
    pb.TOOL_CHOICE_MODE_NAMED: d.ToolChoiceMode.NAMED,
}
STRATEGY_NUMBERS: dict[d.Strategy, pb.Strategy.ValueType] = {
    v: pb.Strategy.ValueType(k) for k, v in STRATEGIES.items()}
KIND_NUMBERS: dict[d.ProviderKind, pb.ProviderKind.ValueType] = {
    v: pb.ProviderKind.ValueType(k) for k, v in KINDS.items()}
CAPABILITY_NUMBERS: dict[d.Capability, pb.Capability.ValueType] = {
    v: pb.Capability.ValueType(k) for k, v in CAPABILITIES.items()}

MAX_MESSAGES = 10_000


class Violations:
    """Collects field violations while converting one request."""

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


def _capabilities(values: Iterable[int], field: str, v: Violations) -> frozenset[d.Capability]:
    found = (v.enum(CAPABILITIES, c, f"{field}[{i}]", "capability") for i, c in enumerate(values))
    return frozenset(c for c in found if c is not None)


def routing_to_domain(msg: pb.RoutingOptions, v: Violations) -> d.RoutingOptions:
    """RoutingOptions → domain."""
    strategy = None
    if msg.strategy != pb.STRATEGY_UNSPECIFIED:
        strategy = v.enum(STRATEGIES, msg.strategy, "routing.strategy", "strategy")
    c = msg.constraints
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
    for name in ("max_input_per_mtok", "max_output_per_mtok", "max_cost_usd", "max_latency_ms",
                 "min_context_window", "estimated_prompt_tokens"):
        value = getattr(constraints, name)
        if value is not None and value < 0:
            v.add(f"routing.constraints.{name}", "must not be negative")
    return d.RoutingOptions(
        model=msg.model.strip(),
        capabilities=_capabilities(msg.capabilities, "routing.capabilities", v),
        strategy=strategy,
        attributes=dict(msg.attributes),
        labels=tuple(msg.labels),
        prefer_providers=tuple(msg.prefer_providers),
        exclude_providers=frozenset(msg.exclude_providers),
        constraints=constraints,
        affinity_key=msg.affinity_key,
    )


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


def messages_to_domain(
    messages: Sequence[pb.ChatMessage], v: Violations, *, required: bool
) -> tuple[d.ChatMessage, ...]:
    """The conversation → domain, checking it is present and bounded."""
    if required and not messages:
        v.add("messages", "must contain at least one message")
    if len(messages) > MAX_MESSAGES:
        v.add("messages", f"at most {MAX_MESSAGES} messages")
        return ()
    converted = (message_to_domain(m, f"messages[{i}]", v) for i, m in enumerate(messages))
    return tuple(m for m in converted if m is not None)


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
        schema = struct_to_json(tool.parameters)
        result.append(d.ToolDefinition(tool.name, tool.description, schema))
    return tuple(result)


def _tool_choice(msg: pb.ToolChoice, present: bool, v: Violations) -> d.ToolChoice | None:
    if not present or msg.mode == pb.TOOL_CHOICE_MODE_UNSPECIFIED:
        return None
    mode = v.enum(TOOL_CHOICES, msg.mode, "tool_choice.mode", "tool choice mode")
    if mode is d.ToolChoiceMode.NAMED and not msg.name:
        v.add("tool_choice.name", "is required with TOOL_CHOICE_MODE_NAMED")
    return d.ToolChoice(mode, msg.name) if mode is not None else None


def _response_format(msg: pb.ResponseFormat, present: bool, v: Violations
                     ) -> d.ResponseFormat | None:
    if not present or msg.type == pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED:
        return None
    kind = v.enum(FORMATS, msg.type, "response_format.type", "response format")
    schema = struct_to_json(msg.json_schema) if msg.HasField("json_schema") else None
    if kind is d.ResponseFormatType.JSON_SCHEMA and schema is None:
        v.add("response_format.json_schema", "is required with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
    if kind is None:
        return None
    return d.ResponseFormat(kind, schema, msg.schema_name)


def chat_to_domain(msg: pb.ChatRequest | pb.StreamChatRequest, *, stream: bool) -> d.ChatRequest:
    """ChatRequest or StreamChatRequest → domain, or InvalidRequestError."""
    v = Violations()
    request = d.ChatRequest(
        messages=messages_to_domain(msg.messages, v, required=True),
        routing=routing_to_domain(msg.routing, v),
        params=_params(msg.parameters, v),
        tools=_tools(msg.tools, v),
        tool_choice=_tool_choice(msg.tool_choice, msg.HasField("tool_choice"), v),
        response_format=_response_format(
            msg.response_format, msg.HasField("response_format"), v),
        metadata=dict(msg.metadata),
        stream=stream,
    )
    v.raise_if_any("invalid chat request")
    return request


def route_to_domain(msg: pb.RouteRequest) -> tuple[d.ChatRequest, float | None]:
    """RouteRequest → (domain request, evaluation time as epoch seconds or None)."""
    v = Violations()
    request = d.ChatRequest(
        messages=messages_to_domain(msg.messages, v, required=False),
        routing=routing_to_domain(msg.routing, v),
        stream=msg.stream,
    )
    v.raise_if_any("invalid route request")
    at = msg.evaluation_time.ToDatetime().timestamp() if msg.HasField("evaluation_time") else None
    return request, at


def _seconds(duration: Duration, present: bool) -> float | None:
    return duration.ToTimedelta().total_seconds() if present else None


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


# --- domain → responses ---------------------------------------------------------------------


def duration(seconds: float) -> Duration:
    """Seconds as a protobuf Duration."""
    result = Duration()
    result.FromNanoseconds(int(seconds * 1e9))
    return result


def timestamp(epoch_seconds: float) -> Timestamp:
    """Epoch seconds as a protobuf Timestamp."""
    result = Timestamp()
    result.FromNanoseconds(int(epoch_seconds * 1e9))
    return result


def usage_to_proto(usage: d.Usage) -> pb.Usage:
    """Usage → proto."""
    return pb.Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                    total_tokens=usage.total_tokens, estimated=usage.estimated)


def attempt_to_proto(attempt: d.Attempt) -> pb.Attempt:
    """Attempt → proto."""
    return pb.Attempt(
        provider=attempt.provider, model=attempt.model, outcome=OUTCOMES[attempt.outcome],
        status_code=attempt.status_code, error=attempt.error,
        duration=duration(attempt.duration_s), reason=attempt.reason,
    )


def attempts_to_proto(attempts: Iterable[d.Attempt]) -> list[pb.Attempt]:
    """Attempts → proto."""
    return [attempt_to_proto(a) for a in attempts]


def _tool_call(call: d.ToolCall) -> pb.ToolCall:
    return pb.ToolCall(id=call.id, name=call.name, arguments_json=call.arguments_json)


def chat_response_to_proto(response: d.ChatResponse, request_id: str) -> pb.ChatResponse:
    """The router's answer → ChatResponse."""
    result = response.result
    message = pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=result.text,
                             tool_calls=[_tool_call(c) for c in result.tool_calls])
    out = pb.ChatResponse(
        provider=response.provider, model=response.model, message=message,
        finish_reason=FINISH_REASONS[result.finish_reason], usage=usage_to_proto(result.usage),
        latency=duration(response.latency_s), attempts=attempts_to_proto(response.attempts),
        request_id=request_id, strategy=STRATEGY_NUMBERS[response.strategy], rule=response.rule,
    )
    if response.cost_usd is not None:
        out.cost_usd = response.cost_usd
    return out


def stream_event_to_proto(event: d.RouterStreamEvent, request_id: str) -> pb.StreamChatResponse:
    """One router stream event → StreamChatResponse."""
    if isinstance(event, d.TextDelta):
        return pb.StreamChatResponse(delta=pb.StreamDelta(text=event.text))
    if isinstance(event, d.ToolCallDelta):
        fragment = pb.ToolCallDelta(index=event.index, id=event.id, name=event.name,
                                    arguments_fragment=event.arguments_fragment)
        return pb.StreamChatResponse(delta=pb.StreamDelta(tool_call_deltas=[fragment]))
    if isinstance(event, d.StreamStarted):
        return pb.StreamChatResponse(start=pb.StreamStart(
            provider=event.provider, model=event.model, request_id=request_id,
            strategy=STRATEGY_NUMBERS[event.strategy], rule=event.rule))
    if isinstance(event, d.StreamRestarted):
        return pb.StreamChatResponse(restart=pb.StreamRestart(
            reason=event.reason, provider=event.provider, model=event.model))
    end = pb.StreamEnd(
        finish_reason=FINISH_REASONS[event.finish_reason], usage=usage_to_proto(event.usage),
        attempts=attempts_to_proto(event.attempts), provider=event.provider, model=event.model,
        latency=duration(event.latency_s),
        time_to_first_token=duration(event.time_to_first_token_s),
    )
    if event.cost_usd is not None:
        end.cost_usd = event.cost_usd
    return pb.StreamChatResponse(end=end)


def decision_to_proto(decision: d.RouteDecision) -> pb.RouteResponse:
    """A routing decision → RouteResponse."""
    return pb.RouteResponse(
        provider=decision.chosen.provider, model=decision.chosen.model,
        strategy=STRATEGY_NUMBERS[decision.strategy], rule=decision.rule,
        fallbacks=[pb.RouteTarget(provider=t.provider, model=t.model) for t in decision.fallbacks],
        candidates=[
            pb.CandidateReport(
                provider=c.provider, model=c.model, eligible=c.eligible, rank=c.rank,
                score=c.score, detail=c.detail,
                exclusion_reason=(EXCLUSIONS[c.exclusion] if c.exclusion
                                  else pb.EXCLUSION_REASON_UNSPECIFIED),
            )
            for c in decision.candidates
        ],
        notes=list(decision.notes),
    )


def _timeouts_to_proto(t: d.ProviderTimeouts) -> pb.ProviderTimeouts:
    out = pb.ProviderTimeouts()
    for name in ("connect", "first_token", "idle", "total"):
        value = getattr(t, name)
        if value is not None:
            getattr(out, name).CopyFrom(duration(value))
    return out


def _model_to_proto(m: d.ModelSpec) -> pb.ModelSpec:
    out = pb.ModelSpec(name=m.name, context_window=m.context_window,
                       capabilities=sorted(CAPABILITY_NUMBERS[c] for c in m.capabilities))
    if m.input_per_mtok is not None:
        out.input_per_mtok = m.input_per_mtok
    if m.output_per_mtok is not None:
        out.output_per_mtok = m.output_per_mtok
    return out


def spec_to_proto(spec: d.ProviderSpec, api_key_set: bool) -> pb.ProviderSpec:
    """A spec → proto with secrets redacted: `api_key` is never filled in."""
    out = pb.ProviderSpec(
        name=spec.name, kind=KIND_NUMBERS[spec.kind], base_url=spec.base_url,
        api_key_env=spec.api_key_env, api_key_set=api_key_set,
        models=[_model_to_proto(m) for m in spec.models],
        capabilities=sorted(CAPABILITY_NUMBERS[c] for c in spec.capabilities),
        priority=spec.priority, weight=spec.weight, max_concurrent=spec.max_concurrent,
        rate_limit_rpm=spec.rate_limit_rpm, rate_limit_tpm=spec.rate_limit_tpm,
        timeouts=_timeouts_to_proto(spec.timeouts), labels=list(spec.labels),
        enabled=spec.enabled, headers=dict(spec.headers),
    )
    if spec.command is not None:
        out.command.CopyFrom(pb.CommandOptions(argv=list(spec.command.argv),
                                               required_envs=list(spec.command.required_envs),
                                               read_output_file=spec.command.read_output_file))
    if spec.mock is not None:
        out.mock.CopyFrom(pb.MockOptions(latency=duration(spec.mock.latency),
                                         chunk_count=spec.mock.chunk_count,
                                         reply=spec.mock.reply, fail_status=spec.mock.fail_status))
    return out


def status_to_proto(s: d.ProviderStatus) -> pb.ProviderStatus:
    """A provider's live status → proto."""
    out = pb.ProviderStatus(
        health=HEALTH[s.health], breaker_state=BREAKER[s.breaker_state], in_flight=s.in_flight,
        load=s.load, latency_ema_ms=s.latency_ema_ms, latency_p50_ms=s.latency_p50_ms,
        latency_p95_ms=s.latency_p95_ms, latency_p99_ms=s.latency_p99_ms,
        ttft_ema_ms=s.ttft_ema_ms, error_rate=s.error_rate, request_count=s.request_count,
        failure_count=s.failure_count, last_error=s.last_error, available=s.available,
        unavailable_reason=s.unavailable_reason, is_mock=s.is_mock,
    )
    if s.last_check_at is not None:
        out.last_check_time.CopyFrom(timestamp(s.last_check_at))
    if s.reported is not None:
        reported = pb.ReportedMetrics(expire_time=timestamp(s.reported.expires_at))
        for name in ("avg_latency_ms", "error_rate", "load"):
            value = getattr(s.reported, name)
            if value is not None:
                setattr(reported, name, value)
        out.reported.CopyFrom(reported)
    return out
