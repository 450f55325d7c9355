"""OpenTelemetry tracing, on only when an OTLP endpoint is configured by the OTEL_* variables.

Off (no endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`), nothing here is
built: `tracing_from_env` returns None and the composition root wires the plain objects, so
the request path holds no tracing code at all (not even a no-op tracer's calls). On, the
root wires traced twins instead: the observer's server span per RPC, joined to the caller's
trace by the W3C `traceparent` of the gRPC metadata; `TracedPlanner` (routing/traced.py) for
the routing decision; `TracedConnector` (connectors/traced.py) for each attempt; and
`TracedHttpClient` (connectors/traced.py) for the upstream HTTP call, which also passes
`traceparent` on to the provider.

Span tree of a Chat that failed over:

    provider_router.v1.RouterService/Chat      SERVER  rpc.*, gen_ai.* usage, status code
      route                                    routing decision: target, strategy, rule
      chat <model>  (provider a)               attempt: provider, outcome, error reason
        POST                                   CLIENT  the HTTP call, its status code
      chat <model>  (provider b)               kind=failover, after=<a's error reason>
        POST

Attributes follow the OpenTelemetry GenAI semantic conventions where they apply
(`gen_ai.operation.name`, `gen_ai.system`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`); the router's own are under
`provider_router.*`. Time to first token is the event `gen_ai.first_token` on the stream's
attempt span and on the StreamChat server span.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from provider_router import domain as d
from provider_router.errors import ConfigError, ProviderError

SERVICE = "provider_router.v1.RouterService"
T = TypeVar("T")

GEN_AI_SYSTEMS: Mapping[d.ProviderKind, str] = {
    d.ProviderKind.OPENAI: "openai",
    d.ProviderKind.OPENAI_COMPATIBLE: "openai",
    d.ProviderKind.ANTHROPIC: "anthropic",
    d.ProviderKind.GEMINI: "gcp.gemini",
    d.ProviderKind.OLLAMA: "ollama",
    d.ProviderKind.COMMAND: "command",
    d.ProviderKind.MOCK: "mock",
}
"""gen_ai.system per provider kind (OpenAI-compatible servers speak OpenAI's API)."""

PROTOCOLS = ("grpc", "http/protobuf")


@dataclass(slots=True)
class AttemptTrail:
    """The attempts of one RPC so far, for each attempt span's retry/failover reason."""

    provider: str = ""
    failure: str = ""
    count: int = 0


TRAIL: contextvars.ContextVar[AttemptTrail | None] = contextvars.ContextVar(
    "provider_router_attempt_trail", default=None)
"""The current RPC's trail (set by the server span; each RPC runs in a task of its own)."""


class Tracing:
    """The tracer and the W3C propagator; exists only while tracing is on."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("provider_router")
        self._propagator = TraceContextTextMapPropagator()

    # --- the server span ---------------------------------------------------------------------

    @contextmanager
    def server_span(self, method: str, metadata: Iterable[tuple[str, object]] | None
                    ) -> Iterator[Span]:
        """The RPC's span, a child of the caller's span when its metadata carries one, and
        current inside the block (for a unary RPC; a stream uses `stream_server_span`)."""
        with self.stream_server_span(method, metadata) as span, \
                trace.use_span(span, record_exception=False, set_status_on_exception=False):
            token = TRAIL.set(AttemptTrail())
            try:
                yield span
            finally:
                TRAIL.reset(token)

    @contextmanager
    def stream_server_span(self, method: str, metadata: Iterable[tuple[str, object]] | None
                           ) -> Iterator[Span]:
        """The RPC's span, not made current: iterate the stream with `stepped`."""
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        span = self.tracer.start_span(
            f"{SERVICE}/{method}", context=self._propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method})
        try:
            yield span
        finally:
            span.end()

    async def stepped(self, span: Span, events: AsyncIterator[T], trail: bool = False
                      ) -> AsyncGenerator[T, None]:
        """`events` with `span` current while each next event is produced, never across a
        yield (and a fresh attempt trail with `trail`, for a server span).

        A context attached in an async generator and detached after a later yield breaks
        when the generator is finalized elsewhere (a caller that hangs up leaves gRPC's
        stream generator to the loop's finalizer, another task and context): so each step
        attaches and detaches on its own, and the close too.
        """
        current = trace.set_span_in_context(span)
        trail_of_rpc = AttemptTrail() if trail else TRAIL.get()
        try:
            while True:
                token, trail_token = otel_context.attach(current), TRAIL.set(trail_of_rpc)
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
                finally:
                    TRAIL.reset(trail_token)
                    otel_context.detach(token)
                yield event
        finally:
            token, trail_token = otel_context.attach(current), TRAIL.set(trail_of_rpc)
            try:
                await events.aclose()  # type: ignore[attr-defined]
            finally:
                TRAIL.reset(trail_token)
                otel_context.detach(token)

    def trace_id(self) -> str:
        """The current trace id as 32 hex digits ("" outside a span)."""
        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else ""

    def finished(self, code: str, answer: d.ChatResponse | d.StreamEnded | None,
                 attempts: tuple[d.Attempt, ...], reason: str) -> None:
        """Annotate the current server span with how the RPC ended."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_attribute("provider_router.attempts", len(attempts))
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, reason or code))
            if reason:
                span.set_attribute("error.type", reason)
        for attempt in attempts:
            if attempt.outcome is d.AttemptOutcome.SKIPPED:
                span.add_event("attempt skipped", {"provider_router.provider": attempt.provider,
                                                   "gen_ai.request.model": attempt.model,
                                                   "provider_router.reason": attempt.reason})
        if answer is not None:
            self._answered(span, answer)

    @staticmethod
    def _answered(span: Span, answer: d.ChatResponse | d.StreamEnded) -> None:
        usage = answer.usage if isinstance(answer, d.StreamEnded) else answer.result.usage
        span.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.response.model": answer.model,
            "provider_router.provider": answer.provider,
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
        })
        if answer.cost_usd is not None:
            span.set_attribute("provider_router.cost_usd", answer.cost_usd)
        if isinstance(answer, d.StreamEnded):
            start = getattr(span, "start_time", None)
            if isinstance(start, int):
                span.add_event("gen_ai.first_token", {"provider_router.ttft_s":
                                                      answer.time_to_first_token_s},
                               timestamp=start + int(answer.time_to_first_token_s * 1e9))

    # --- the routing decision ----------------------------------------------------------------

    @contextmanager
    def decision_span(self, request: d.ChatRequest) -> Iterator[Span]:
        """The routing decision's span (its outcome is set by `decided`)."""
        with self.tracer.start_as_current_span(
                "route", attributes={"gen_ai.request.model": request.routing.model,
                                     "provider_router.stream": request.stream}) as span:
            yield span

    @staticmethod
    def decided(span: Span, decision: d.RouteDecision) -> None:
        """Record the decision: chosen target, strategy, rule, the chain's length."""
        chosen = decision.targets[0] if decision.targets else None
        span.set_attributes({
            "provider_router.strategy": str(decision.strategy),
            "provider_router.rule": decision.rule,
            "provider_router.targets": len(decision.targets),
        })
        if chosen is not None:  # gen_ai.request.model stays what the caller asked for
            span.set_attributes({"provider_router.provider": chosen.provider,
                                 "provider_router.model": chosen.model})

    # --- attempts -----------------------------------------------------------------------------

    @contextmanager
    def attempt_span(self, spec: d.ProviderSpec, model: str, *, current: bool = True
                     ) -> Iterator[Span]:
        """One attempt at a provider; says whether it is a retry or a failover, and why.
        `current=False` for a stream's (iterate it with `stepped`)."""
        trail = TRAIL.get()
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "chat", "gen_ai.system": GEN_AI_SYSTEMS[spec.kind],
            "gen_ai.request.model": model, "provider_router.provider": spec.name,
        }
        if trail is not None:
            attributes["provider_router.attempt"] = trail.count + 1
            if trail.count:
                attributes["provider_router.attempt.kind"] = (
                    "retry" if trail.provider == spec.name else "failover")
                attributes["provider_router.attempt.after"] = trail.failure
            else:
                attributes["provider_router.attempt.kind"] = "first"
            trail.count += 1
            trail.provider = spec.name
            trail.failure = ""
        span = self.tracer.start_span(f"chat {model}", attributes=attributes)
        try:
            with _current(span, current):
                yield span
        except ProviderError as error:
            self._attempt_failed(span, error, trail)
            raise
        except BaseException as error:  # cancelled, or closed early by the caller
            span.set_attribute("provider_router.outcome", _interrupted(error))
            raise
        finally:
            span.end()

    @staticmethod
    def _attempt_failed(span: Span, error: ProviderError, trail: AttemptTrail | None) -> None:
        span.set_status(Status(StatusCode.ERROR, error.reason))
        span.set_attributes({"provider_router.outcome": str(error.outcome),
                             "error.type": error.reason})
        if error.status_code:
            span.set_attribute("http.response.status_code", error.status_code)
        if trail is not None:
            trail.failure = error.reason

    @staticmethod
    def attempt_answered(span: Span, model: str, usage: d.Usage) -> None:
        """The attempt succeeded with `usage` from `model`."""
        span.set_attributes({"provider_router.outcome": "success",
                             "gen_ai.response.model": model,
                             "gen_ai.usage.input_tokens": usage.prompt_tokens,
                             "gen_ai.usage.output_tokens": usage.completion_tokens})

    # --- the upstream HTTP call ----------------------------------------------------------------

    @contextmanager
    def http_span(self, method: str, url: str, host: str, port: int, *, current: bool = True
                  ) -> Iterator[Span]:
        """The HTTP request to a provider (CLIENT); the URL is logged without its query.
        `current=False` for a stream's (iterate it with `stepped`)."""
        span = self.tracer.start_span(
            method, kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": url.split("?", 1)[0],
                        "server.address": host, "server.port": port})
        try:
            with _current(span, current):
                yield span
        except ProviderError as error:
            span.set_status(Status(StatusCode.ERROR, error.reason))
            span.set_attribute("error.type", error.reason)
            if error.status_code:
                span.set_attribute("http.response.status_code", error.status_code)
            raise
        finally:
            span.end()

    def inject(self, headers: Mapping[str, str], span: Span) -> dict[str, str]:
        """`headers` plus `span`'s `traceparent` (and `tracestate`), for the provider."""
        carrier = dict(headers)
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def shutdown(self) -> None:
        """Export what is buffered and stop (at server shutdown)."""
        self.provider.shutdown()


def _current(span: Span, current: bool) -> AbstractContextManager[object]:
    """`span` made current for the block, or nothing."""
    if not current:
        return nullcontext()
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


def _interrupted(error: BaseException) -> str:
    return "closed" if isinstance(error, GeneratorExit) else "cancelled"


def _enabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _exporter_from_env(env: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter the OTEL_* variables ask for, None when they configure none."""
    kinds = [k.strip() for k in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if k.strip()]
    if not kinds or kinds == ["none"]:
        return None
    kind = kinds[0]
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ConfigError("OTEL_TRACES_EXPORTER", kind, "otlp, console or none")
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    generic = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not (specific or generic):
        return None  # no endpoint: tracing stays off
    protocol_var = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                    if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") else
                    "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = env.get(protocol_var, "http/protobuf").strip() or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ConfigError(protocol_var, protocol, " or ".join(PROTOCOLS))
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        return GrpcExporter(endpoint=specific or generic)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )
    # The generic endpoint is a base URL; the signal's path is appended (OTLP spec).
    return HttpExporter(endpoint=specific or generic.rstrip("/") + "/v1/traces")


def check_tracing_env(env: Mapping[str, str]) -> None:
    """Raise ConfigError for OTEL_* tracing variables the server would refuse at start."""
    if _enabled(env):
        exporter = _exporter_from_env(env)
        if exporter is not None:
            exporter.shutdown()


def tracing_from_env(env: Mapping[str, str], exporter: SpanExporter | None = None
                     ) -> Tracing | None:
    """Tracing as the OTEL_* variables configure it, or None when it is off.

    `exporter` replaces the configured one and is flushed span by span (tests use an
    in-memory exporter); the configured one is batched on a background thread.
    """
    if not _enabled(env):
        return None
    batch = exporter is None
    exporter = exporter or _exporter_from_env(env)
    if exporter is None:
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME")
                                or "provider-router"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch
                                else SimpleSpanProcessor(exporter))
    return Tracing(provider)
