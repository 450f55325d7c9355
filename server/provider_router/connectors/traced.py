"""Traced twins of the connector and its HTTP client, wired only while tracing is on.

The composition root builds connectors through `traced_factory` when tracing is on, and
RemoteConnector picks `TracedHttpClient` when its settings carry a Tracing: with tracing off
neither class exists on the request path, so it costs nothing there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable

from opentelemetry.trace import Span

from provider_router.connectors.base import Connector
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.settings import ConnectorSettings
from provider_router.connectors.streaming import StreamDecoder
from provider_router.domain import (
    ChatResult,
    JsonValue,
    ProbeResult,
    ProviderRequest,
    ProviderSpec,
    StreamEvent,
    StreamFinish,
)
from provider_router.resilience.deadline import Deadline
from provider_router.telemetry.tracing import Tracing

Factory = Callable[[ProviderSpec, ConnectorSettings], Connector]


class TracedConnector:
    """A connector whose every call is an attempt span (see telemetry/tracing.py)."""

    def __init__(self, inner: Connector, spec: ProviderSpec, tracing: Tracing) -> None:
        self._inner = inner
        self._spec = spec
        self._tracing = tracing

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """The inner chat inside an attempt span."""
        with self._tracing.attempt_span(self._spec, request.model) as span:
            result = await self._inner.chat(request, deadline)
            self._tracing.attempt_answered(span, result.model or request.model, result.usage)
            return result

    async def stream(self, request: ProviderRequest, deadline: Deadline
                     ) -> AsyncGenerator[StreamEvent, None]:
        """The inner stream inside an attempt span, with the first delta as an event."""
        tracing = self._tracing
        with tracing.attempt_span(self._spec, request.model, current=False) as span:
            first = True
            events = tracing.stepped(span, self._inner.stream(request, deadline))
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, StreamFinish):
                        tracing.attempt_answered(span, event.model or request.model,
                                                 event.usage)
                        # The consumer stops at the finish event (closing this generator):
                        # that ends a successful attempt, not an interrupted one.
                        with contextlib.suppress(GeneratorExit):
                            yield event
                        return
                    if first:
                        first = False
                        span.add_event("gen_ai.first_token")
                    yield event

    async def probe(self) -> ProbeResult:
        """Probes are not traced: they would fill traces with health checks."""
        return await self._inner.probe()

    async def aclose(self) -> None:
        """Close the inner connector."""
        await self._inner.aclose()


def traced_factory(factory: Factory, tracing: Tracing) -> Factory:
    """A connector factory whose connectors trace every attempt."""

    def create(spec: ProviderSpec, settings: ConnectorSettings) -> Connector:
        return TracedConnector(factory(spec, settings), spec, tracing)

    return create


class TracedHttpClient(HttpClient):
    """The HTTP client with a CLIENT span per request and `traceparent` sent upstream."""

    def __init__(self, tracing: Tracing, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._tracing = tracing

    def _span(self, call: HttpCall, current: bool = True
              ) -> contextlib.AbstractContextManager[Span]:
        target = self._target(call.url)
        return self._tracing.http_span(call.method, call.url, target.origin.host,
                                       target.origin.port, current=current)

    def _propagating(self, call: HttpCall, span: Span) -> HttpCall:
        return HttpCall(call.method, call.url, self._tracing.inject(call.headers, span),
                        call.body)

    async def request_json(self, call: HttpCall, deadline: Deadline) -> JsonValue:
        """A unary call inside an HTTP span."""
        with self._span(call) as span:
            return await super().request_json(self._propagating(call, span), deadline)

    async def stream(self, call: HttpCall, deadline: Deadline,
                     decoder: StreamDecoder) -> AsyncGenerator[StreamEvent, None]:
        """A streaming call inside an HTTP span (open until the stream ends)."""
        with self._span(call, current=False) as span:
            events = super().stream(self._propagating(call, span), deadline, decoder)
            async with contextlib.aclosing(self._tracing.stepped(span, events)) as stream:
                async for event in stream:
                    yield event
