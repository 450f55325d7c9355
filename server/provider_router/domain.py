"""Domain types shared by every layer: frozen, slotted, protobuf-free.

These mirror the contract in protos/provider_router/v1/router.proto; api/convert.py is the
only place that translates between the two. The ones built on every request, attempt or
stream event are marked @fast_init: same dataclass, a constructor about twice as fast.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from provider_router.fast_init import fast_init

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""A value that can be encoded as JSON."""

JsonObject = Mapping[str, JsonValue]
"""A JSON object, e.g. a tool's parameter schema."""

class Capability(enum.StrEnum):
    """Something a provider or model can do, and that a request can require."""

    CHAT = "chat"
    STREAMING = "streaming"
    VISION = "vision"
    TOOLS = "tools"
    JSON = "json"
    EMBEDDINGS = "embeddings"
    REASONING = "reasoning"


class Strategy(enum.StrEnum):
    """The way candidates are ordered."""

    EXPLICIT = "explicit"
    DEFAULT = "default"
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_LOADED = "least_loaded"
    LATENCY = "latency"
    COST = "cost"
    CAPABILITY = "capability"
    RULES = "rules"
    FAILOVER = "failover"
    AFFINITY = "affinity"


class ProviderKind(enum.StrEnum):
    """The wire protocol a provider speaks."""

    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai_compatible"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    OLLAMA = "ollama"
    COMMAND = "command"
    MOCK = "mock"


class Role(enum.StrEnum):
    """The author of a chat message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.StrEnum):
    """Why generation stopped."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


class AttemptOutcome(enum.StrEnum):
    """How one attempt against one provider ended."""

    SUCCESS = "success"
    PROVIDER_ERROR = "provider_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    AUTH_FAILED = "auth_failed"
    SKIPPED = "skipped"
    STREAM_BROKEN = "stream_broken"
    CANCELLED = "cancelled"
    CONNECTION_FAILED = "connection_failed"
    HEDGE_LOST = "hedge_lost"


class HealthState(enum.StrEnum):
    """A provider's health."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class BreakerState(enum.StrEnum):
    """A circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ExclusionReason(enum.StrEnum):
    """Why a candidate cannot serve a request."""

    EXCLUDED_BY_CALLER = "excluded_by_caller"
    DISABLED = "disabled"
    BREAKER_OPEN = "breaker_open"
    RATE_LIMITED = "rate_limited"
    CONCURRENCY_LIMIT = "concurrency_limit"
    MISSING_CAPABILITY = "missing_capability"
    PRICE = "price"
    CONTEXT_WINDOW = "context_window"
    LATENCY = "latency"
    UNHEALTHY = "unhealthy"
    UNAVAILABLE = "unavailable"
    COOLDOWN = "cooldown"


class ResponseFormatType(enum.StrEnum):
    """The shape of the answer."""

    TEXT = "text"
    JSON = "json"
    JSON_SCHEMA = "json_schema"


class ToolChoiceMode(enum.StrEnum):
    """Whether and how the model may call tools."""

    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    NAMED = "named"


class Secret:
    """A secret string whose repr and str never reveal it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is sent to its provider."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


# --- provider specs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model a provider serves, with its price and limits."""

    name: str
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    context_window: int = 0
    capabilities: frozenset[Capability] = frozenset()


@dataclass(frozen=True, slots=True)
class ProviderTimeouts:
    """Per-phase timeouts in seconds; None means the server default."""

    connect: float | None = None
    first_token: float | None = None
    idle: float | None = None
    total: float | None = None


@dataclass(frozen=True, slots=True)
class CommandOptions:
    """How to run a command-line agent."""

    argv: tuple[str, ...] = ()
    required_envs: tuple[str, ...] = ()
    read_output_file: bool = False


@dataclass(frozen=True, slots=True)
class MockOptions:
    """How the built-in mock behaves."""

    latency: float = 0.0
    chunk_count: int = 4
    reply: str = ""
    fail_status: int = 0


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as configured or registered. `api_key` is write-only."""

    name: str
    kind: ProviderKind
    base_url: str = ""
    api_key_env: str = ""
    api_key: Secret | None = None
    models: tuple[ModelSpec, ...] = ()
    capabilities: frozenset[Capability] = frozenset({Capability.CHAT})
    priority: int = 0
    weight: float = 1.0
    max_concurrent: int = 0
    rate_limit_rpm: int = 0
    rate_limit_tpm: int = 0
    timeouts: ProviderTimeouts = ProviderTimeouts()
    labels: tuple[str, ...] = ()
    enabled: bool = True
    # Extra headers may carry credentials (e.g. Azure's api-key): kept out of reprs.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    command: CommandOptions | None = None
    mock: MockOptions | None = None

    def model(self, name: str) -> ModelSpec | None:
        """The model spec of that name, if this provider lists it."""
        for model in self.models:
            if model.name == name:
                return model
        return None

    def model_capabilities(self, model: ModelSpec | None) -> frozenset[Capability]:
        """A model's capabilities: its own when given, else the provider's."""
        if model is not None and model.capabilities:
            return model.capabilities
        return self.capabilities


# --- chat requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingConstraints:
    """Constraints that narrow the candidates."""

    max_input_per_mtok: float | None = None
    max_output_per_mtok: float | None = None
    max_cost_usd: float | None = None
    max_latency_ms: float | None = None
    min_context_window: int | None = None
    estimated_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a request is hedged (routing/hedge.py): a fixed delay, a percentile of the
    target's observed latency or TTFT (with `after_s` as the delay while unmeasured), or both."""

    after_s: float | None = None
    percentile: float | None = None
    max_hedges: int = 1
    allow_tools: bool = False
    enabled: bool = True


NO_HEDGING = HedgePolicy(enabled=False)
"""A request's explicit "no hedging", whatever the configuration says."""


@fast_init
@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """The routing part of Route, Chat and StreamChat."""

    model: str = ""
    capabilities: frozenset[Capability] = frozenset()
    strategy: Strategy | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    prefer_providers: tuple[str, ...] = ()
    exclude_providers: frozenset[str] = frozenset()
    constraints: RoutingConstraints = RoutingConstraints()
    affinity_key: str = ""
    # Targets the caller names to try after the routed candidates, in order.
    fallbacks: tuple[RouteTarget, ...] = ()
    # None: the configured [routing.hedge] applies (routing/hedge.py).
    hedge: HedgePolicy | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class TextPart:
    """A text part of a message."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image part of a message: by URL, or inline bytes with a media type."""

    url: str = ""
    data: bytes = b""
    mime_type: str = ""


ContentPart = TextPart | ImagePart
"""One part of a multi-part message."""


@fast_init
@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for; arguments are JSON text."""

    id: str
    name: str
    arguments_json: str


@fast_init
@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation."""

    role: Role
    content: str = ""
    parts: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""

    def text(self) -> str:
        """All text of the message: `content`, or the text parts joined."""
        if not self.parts:
            return self.content
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def has_images(self) -> bool:
        """Whether the message carries an image part."""
        return any(isinstance(p, ImagePart) for p in self.parts)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters; None means the provider default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A function the model may call; parameters is a JSON schema object."""

    name: str
    description: str = ""
    parameters: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """How the model may call tools."""

    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str = ""


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Text or JSON output."""

    type: ResponseFormatType = ResponseFormatType.TEXT
    json_schema: JsonObject | None = None
    schema_name: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A conversation to route and complete (Chat, StreamChat, Route)."""

    messages: tuple[ChatMessage, ...]
    routing: RoutingOptions = RoutingOptions()
    params: GenerationParams = GenerationParams()
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    # The tenant the caller authenticated as (set by the api layer from the API key, never
    # from anything the caller wrote); "" when tenants are off or the key has none.
    tenant: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """What a connector receives: the chat request bound to one provider model."""

    chat: ChatRequest
    model: str


# --- results --------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; `estimated` when the provider reported none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class ChatResult:
    """A connector's normalized answer."""

    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    response_id: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class TextDelta:
    """Stream event: a fragment of text."""

    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Stream event: a fragment of a tool call (id and name in the first fragment)."""

    index: int
    id: str = ""
    name: str = ""
    arguments_fragment: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class StreamFinish:
    """Stream event: the provider finished cleanly; the last event of a connector stream."""

    finish_reason: FinishReason
    usage: Usage
    model: str = ""


StreamEvent = TextDelta | ToolCallDelta | StreamFinish
"""What a connector's stream yields; it ends with exactly one StreamFinish or raises."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of a cheap liveness check."""

    ok: bool
    detail: str = ""
    latency_ms: float = 0.0


@fast_init
@dataclass(frozen=True, slots=True)
class Attempt:
    """One call (or skip) against one provider."""

    provider: str
    model: str
    outcome: AttemptOutcome
    duration_s: float = 0.0
    status_code: int = 0
    error: str = ""
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class RouteTarget:
    """A provider and one of its models."""

    provider: str
    model: str


@fast_init
@dataclass(frozen=True, slots=True)
class CandidateReport:
    """Why one candidate ranked where it did, or why it was excluded."""

    provider: str
    model: str
    eligible: bool
    rank: int = 0
    score: float = 0.0
    exclusion: ExclusionReason | None = None
    detail: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A routing decision: the ordered targets (chosen first) and the explanation."""

    targets: tuple[RouteTarget, ...]
    strategy: Strategy
    rule: str = ""
    candidates: tuple[CandidateReport, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def chosen(self) -> RouteTarget:
        """The first target."""
        return self.targets[0]

    @property
    def fallbacks(self) -> tuple[RouteTarget, ...]:
        """The failover chain after the chosen target."""
        return self.targets[1:]


@fast_init
@dataclass(frozen=True, slots=True)
class ChatResponse:
    """The router's normalized answer to Chat."""

    provider: str
    model: str
    result: ChatResult
    cost_usd: float | None
    latency_s: float
    attempts: tuple[Attempt, ...]
    strategy: Strategy
    rule: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class StreamStarted:
    """Router stream event: who serves the stream."""

    provider: str
    model: str
    strategy: Strategy
    rule: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class StreamRestarted:
    """Router stream event: discard deltas so far; another provider starts over."""

    reason: str
    provider: str
    model: str


@fast_init
@dataclass(frozen=True, slots=True)
class StreamEnded:
    """Router stream event: the stream finished with a complete answer."""

    provider: str
    model: str
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float | None
    attempts: tuple[Attempt, ...]
    latency_s: float
    time_to_first_token_s: float


RouterStreamEvent = StreamStarted | TextDelta | ToolCallDelta | StreamRestarted | StreamEnded
"""What the router's stream yields to the servicer."""


# --- provider status ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportedMetrics:
    """Externally reported metrics and when they expire (epoch seconds)."""

    avg_latency_ms: float | None = None
    error_rate: float | None = None
    load: float | None = None
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A provider's live state, as ListProviders shows it."""

    health: HealthState = HealthState.UNKNOWN
    breaker_state: BreakerState = BreakerState.CLOSED
    in_flight: int = 0
    load: float = 0.0
    latency_ema_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    latency_p99_ms: float = 0.0
    ttft_ema_ms: float = 0.0
    error_rate: float = 0.0
    request_count: int = 0
    failure_count: int = 0
    last_error: str = ""
    last_check_at: float | None = None
    available: bool = True
    unavailable_reason: str = ""
    is_mock: bool = False
    reported: ReportedMetrics | None = None


@dataclass(frozen=True, slots=True)
class ProviderView:
    """A provider's spec and status, for ListProviders."""

    spec: ProviderSpec
    status: ProviderStatus


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """What Register did."""

    spec: ProviderSpec
    created: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class MetricsReport:
    """UpdateMetrics input: externally measured values; ttl None = server default."""

    provider: str
    avg_latency_ms: float | None = None
    error_rate: float | None = None
    load: float | None = None
    ttl_s: float | None = None
