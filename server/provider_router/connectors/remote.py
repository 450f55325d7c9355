"""The shared shape of a connector that speaks JSON over HTTP to a remote provider.

A provider module declares its wire translation once, as a `WireProtocol` of its pure
functions (`to_request`, `from_response`, `probe_request`, `map_error`) and its stream's
state class and framing; pooling, timeouts, cancellation and error mapping live here and
in http.py.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from provider_router.connectors.errormap import ErrorMapper
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.settings import ConnectorSettings
from provider_router.connectors.streaming import StreamDecoder, StreamState
from provider_router.connectors.timing import PhaseTimeouts
from provider_router.domain import (
    ChatResult,
    JsonValue,
    ProbeResult,
    ProviderRequest,
    ProviderSpec,
    StreamEvent,
)
from provider_router.errors import ProviderError
from provider_router.resilience.deadline import Deadline

# A liveness check should answer fast even when chat timeouts are generous.
_MAX_PROBE_S = 10.0


class RequestBuilder(Protocol):
    """A module's `to_request`: the HTTP call for one chat request."""

    def __call__(self, request: ProviderRequest, spec: ProviderSpec,
                 settings: ConnectorSettings, *, stream: bool = False) -> HttpCall:
        """Build the call."""
        ...


@dataclass(frozen=True, slots=True)
class WireProtocol:
    """One provider's wire translation, declared once per provider module."""

    to_request: RequestBuilder
    from_response: Callable[[str, JsonValue, ProviderRequest], ChatResult]
    stream_state: Callable[[str, ProviderRequest], StreamState]
    framing: Callable[[StreamState], StreamDecoder]  # SseDecoder or NdjsonDecoder
    probe_request: Callable[[ProviderSpec, ConnectorSettings], HttpCall]
    map_error: ErrorMapper


class RemoteConnector:
    """An HTTP connector: pooling and timeouts here, translation from its WireProtocol."""

    def __init__(self, spec: ProviderSpec, settings: ConnectorSettings,
                 protocol: WireProtocol) -> None:
        self.spec = spec
        self.settings = settings
        self._protocol = protocol
        timeouts = PhaseTimeouts.resolve(spec.timeouts, settings.default_timeouts)
        client: Callable[..., HttpClient] = HttpClient
        if settings.tracing is not None:
            # Imported only when tracing is on: the OpenTelemetry SDK is not loaded otherwise.
            from provider_router.connectors.traced import TracedHttpClient
            client = functools.partial(TracedHttpClient, settings.tracing)
        self._http = client(spec.name, timeouts, protocol.map_error,
                            max_idle=spec.max_concurrent, egress=settings.egress_policy(spec),
                            proxies=settings.proxies)

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """Complete the request in one call."""
        protocol = self._protocol
        call = protocol.to_request(request, self.spec, self.settings, stream=False)
        body = await self._http.request_json(call, deadline)
        return protocol.from_response(self.spec.name, body, request)

    def stream(self, request: ProviderRequest,
               deadline: Deadline) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer: deltas, then exactly one StreamFinish; raises on failure.

        The HTTP client's generator itself, not one wrapped around it: a layer here would
        cost a resumption per event. Whoever iterates it closes it (the dispatcher uses
        `aclosing`), which drops the upstream connection at once."""
        protocol = self._protocol
        call = protocol.to_request(request, self.spec, self.settings, stream=True)
        decoder = protocol.framing(protocol.stream_state(self.spec.name, request))
        return self._http.stream(call, deadline, decoder)

    async def probe(self) -> ProbeResult:
        """A cheap liveness check that spends no tokens."""
        try:
            call = self._protocol.probe_request(self.spec, self.settings)
        except ProviderError as exc:
            return ProbeResult(False, exc.message)
        timeouts = self._http.timeouts
        timeout = min(_MAX_PROBE_S, timeouts.connect + timeouts.first_token, timeouts.total)
        return await self._http.probe(call, timeout)

    async def aclose(self) -> None:
        """Release pooled connections; safe to call twice."""
        await self._http.aclose()
