"""The shared shape of a connector that speaks JSON over HTTP to a remote provider.

A provider module declares its wire translation once, as a `WireProtocol` of its pure
functions (`to_request`, `from_response`, a stream decoder, `probe_request`, `map_error`);
pooling, timeouts, cancellation and error mapping live here and in http.py.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from provider_router.connectors.http import ErrorMapper, HttpCall, HttpClient
from provider_router.connectors.settings import ConnectorSettings
from provider_router.connectors.streaming import StreamDecoder
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
    decoder: Callable[[str, ProviderRequest], StreamDecoder]
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
        self._http = HttpClient(spec.name, timeouts, protocol.map_error,
                                limit=spec.max_concurrent)

    def build_call(self, request: ProviderRequest, *, stream: bool) -> HttpCall:
        """The provider request for a chat call."""
        return self._protocol.to_request(request, self.spec, self.settings, stream=stream)

    def decoder(self, request: ProviderRequest) -> StreamDecoder:
        """A fresh stream decoder for one streaming call."""
        return self._protocol.decoder(self.spec.name, request)

    def parse(self, body: JsonValue, request: ProviderRequest) -> ChatResult:
        """The normalized result of a unary call."""
        return self._protocol.from_response(self.spec.name, body, request)

    def probe_call(self) -> HttpCall:
        """The token-free request that proves the provider is reachable and accepts us."""
        return self._protocol.probe_request(self.spec, self.settings)

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """Complete the request in one call."""
        call = self.build_call(request, stream=False)
        body = await self._http.request_json(call, deadline)
        return self.parse(body, request)

    def stream(self, request: ProviderRequest,
               deadline: Deadline) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer: deltas, then exactly one StreamFinish; raises on failure.

        The HTTP client's generator itself, not one wrapped around it: a layer here would
        cost a resumption per event. Whoever iterates it closes it (the dispatcher uses
        `aclosing`), which drops the upstream connection at once."""
        call = self.build_call(request, stream=True)
        return self._http.stream(call, deadline, self.decoder(request))

    async def probe(self) -> ProbeResult:
        """A cheap liveness check that spends no tokens."""
        try:
            call = self.probe_call()
        except ProviderError as exc:
            return ProbeResult(False, exc.message)
        timeouts = self._http.timeouts
        timeout = min(_MAX_PROBE_S, timeouts.connect + timeouts.first_token, timeouts.total)
        return await self._http.probe(call, timeout)

    async def aclose(self) -> None:
        """Release pooled connections; safe to call twice."""
        await self._http.aclose()
