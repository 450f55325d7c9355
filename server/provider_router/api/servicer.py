"""The RouterService servicer: convert → router → convert. Nothing else lives here.

Errors are not handled here: api/interceptors.py maps them to a status once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc.aio

from provider_router import domain as d
from provider_router.api import convert
from provider_router.api.interceptors import Observer
from provider_router.resilience.deadline import Deadline
from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class RouterPort(Protocol):
    """What the servicer needs from the router (routing/router.py implements it)."""

    def route(self, request: d.ChatRequest, at: float | None) -> d.RouteDecision:
        """Decide without calling."""
        ...

    async def chat(self, request: d.ChatRequest, deadline: Deadline) -> d.ChatResponse:
        """Route and complete."""
        ...

    def stream(self, request: d.ChatRequest, deadline: Deadline
               ) -> AsyncIterator[d.RouterStreamEvent]:
        """Route and stream."""
        ...

    async def register(self, spec: d.ProviderSpec, validate_only: bool) -> d.RegisterOutcome:
        """Add or replace a provider."""
        ...

    async def unregister(self, name: str) -> d.ProviderSpec:
        """Remove a provider."""
        ...

    def update_metrics(self, report: d.MetricsReport) -> d.ProviderStatus:
        """Blend in external metrics."""
        ...

    def providers(self, names: tuple[str, ...]) -> list[d.ProviderView]:
        """Specs and live status."""
        ...

    def api_key_set(self, spec: d.ProviderSpec) -> bool:
        """Whether a key is available for the provider (never the key)."""
        ...


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Implements provider_router.v1.RouterService on top of a RouterPort."""

    def __init__(self, router: RouterPort, observer: Observer, default_deadline_s: float) -> None:
        self._router = router
        self._default_deadline_s = default_deadline_s
        # Each RPC runs inside the observer (request id, metrics, error → status), bound once.
        self._route_rpc = observer.unary("Route", self._route)
        self._chat_rpc = observer.unary("Chat", self._chat)
        self._stream_rpc = observer.stream("StreamChat", self._stream_chat)
        self._register_rpc = observer.unary("Register", self._register)
        self._unregister_rpc = observer.unary("Unregister", self._unregister)
        self._metrics_rpc = observer.unary("UpdateMetrics", self._update_metrics)
        self._list_rpc = observer.unary("ListProviders", self._list_providers)

    async def Route(self, request: pb.RouteRequest, context: Context) -> pb.RouteResponse:
        """Decide where a request would go."""
        return await self._route_rpc(request, context)

    async def Chat(self, request: pb.ChatRequest, context: Context) -> pb.ChatResponse:
        """Route and complete."""
        return await self._chat_rpc(request, context)

    async def StreamChat(self, request: pb.StreamChatRequest, context: Context
                         ) -> AsyncIterator[pb.StreamChatResponse]:
        """Route and stream (an async generator: grpc.aio treats it as server streaming)."""
        async for response in self._stream_rpc(request, context):
            yield response

    async def Register(self, request: pb.RegisterRequest, context: Context
                       ) -> pb.RegisterResponse:
        """Add or replace a provider."""
        return await self._register_rpc(request, context)

    async def Unregister(self, request: pb.UnregisterRequest, context: Context
                         ) -> pb.UnregisterResponse:
        """Remove a provider."""
        return await self._unregister_rpc(request, context)

    async def UpdateMetrics(self, request: pb.UpdateMetricsRequest, context: Context
                            ) -> pb.UpdateMetricsResponse:
        """Blend in external metrics."""
        return await self._metrics_rpc(request, context)

    async def ListProviders(self, request: pb.ListProvidersRequest, context: Context
                            ) -> pb.ListProvidersResponse:
        """Specs and live status."""
        return await self._list_rpc(request, context)

    def _deadline(self, context: Context) -> Deadline:
        remaining = context.time_remaining()
        if remaining is None:
            return Deadline.after(self._default_deadline_s)
        return Deadline.after(remaining)

    async def _route(self, request: pb.RouteRequest, context: Context, request_id: str
                     ) -> pb.RouteResponse:
        domain_request, at = convert.route_to_domain(request)
        return convert.decision_to_proto(self._router.route(domain_request, at))

    async def _chat(self, request: pb.ChatRequest, context: Context, request_id: str
                    ) -> pb.ChatResponse:
        domain_request = convert.chat_to_domain(request, stream=False)
        response = await self._router.chat(domain_request, self._deadline(context))
        return convert.chat_response_to_proto(response, request_id)

    async def _stream_chat(self, request: pb.StreamChatRequest, context: Context,
                           request_id: str) -> AsyncIterator[pb.StreamChatResponse]:
        domain_request = convert.chat_to_domain(request, stream=True)
        async for event in self._router.stream(domain_request, self._deadline(context)):
            yield convert.stream_event_to_proto(event, request_id)

    async def _register(self, request: pb.RegisterRequest, context: Context, request_id: str
                        ) -> pb.RegisterResponse:
        outcome = await self._router.register(convert.spec_to_domain(request.provider),
                                              request.validate_only)
        return pb.RegisterResponse(
            provider=convert.spec_to_proto(outcome.spec, self._router.api_key_set(outcome.spec)),
            created=outcome.created, changed=outcome.changed)

    async def _unregister(self, request: pb.UnregisterRequest, context: Context,
                          request_id: str) -> pb.UnregisterResponse:
        spec = await self._router.unregister(request.name)
        return pb.UnregisterResponse(
            provider=convert.spec_to_proto(spec, self._router.api_key_set(spec)))

    async def _update_metrics(self, request: pb.UpdateMetricsRequest, context: Context,
                              request_id: str) -> pb.UpdateMetricsResponse:
        status = self._router.update_metrics(convert.metrics_to_domain(request))
        return pb.UpdateMetricsResponse(status=convert.status_to_proto(status))

    async def _list_providers(self, request: pb.ListProvidersRequest, context: Context,
                              request_id: str) -> pb.ListProvidersResponse:
        views = self._router.providers(tuple(request.names))
        return pb.ListProvidersResponse(providers=[
            pb.ProviderInfo(spec=convert.spec_to_proto(v.spec, self._router.api_key_set(v.spec)),
                            status=convert.status_to_proto(v.status))
            for v in views
        ])
