"""Protobuf enum numbers ↔ domain enums, one table per enum (shared by both directions)."""

from __future__ import annotations

from provider_router import domain as d
from provider_router.v1 import router_pb2 as pb

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
    d.AttemptOutcome.HEDGE_LOST: pb.ATTEMPT_OUTCOME_HEDGE_LOST,
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
    d.ExclusionReason.COOLDOWN: pb.EXCLUSION_REASON_COOLDOWN,
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

