"""The RouterService servicer: convert → router → convert. Nothing else lives here.

Errors are not handled here: api/interceptors.py maps them to a status once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import grpc.aio
from google.protobuf import message_factory

from provider_router import domain as d
from provider_router.api import convert
from provider_router.api.decoding import safe_deserializer
from provider_router.api.interceptors import Observer
from provider_router.api.tenancy import TenantPort, tenants_to_proto, usage_to_proto, with_tenant
from provider_router.resilience.deadline import Deadline
from provider_router.v1 import router_pb2 as pb

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


Unary = Callable[[Any, Context], Awaitable[Any]]
Streaming = Callable[[Any, Context], AsyncIterator[Any]]


class RouterServicer:
    """Implements provider_router.v1.RouterService on top of a RouterPort.

    Each RPC attribute is the observed handler itself (built once here), not a method that
    forwards to it: gRPC calls straight into the observer's wrapper, one layer fewer per call
    and, for StreamChat, per message. `add_to` registers them with the generated helper,
    which only reads the attributes named after the RPCs.
    """

    Route: Unary
    Chat: Unary
    StreamChat: Streaming
    Register: Unary
    Unregister: Unary
    UpdateMetrics: Unary
    ListProviders: Unary
    GetUsage: Unary
    ListTenants: Unary

    def __init__(self, router: RouterPort, observer: Observer, default_deadline_s: float,
                 tenants: TenantPort | None = None) -> None:
        self._router = router
        self._tenants = tenants
        self._default_deadline_s = default_deadline_s
        # Each RPC runs inside the observer (request id, metrics, error → status).
        # With tenants the chat RPCs take the tenant from the API key (api/tenancy.py);
        # without, they are the plain handlers: no tenant work at all per call.
        tenanted = tenants is not None
        self.Route = observer.unary("Route", self._route_tenanted if tenanted else self._route)
        self.Chat = observer.answer("Chat", self._chat_tenanted if tenanted else self._chat,
                                    convert.chat_response_to_proto)
        self.StreamChat = observer.stream(
            "StreamChat", self._stream_tenanted if tenanted else self._stream_events,
            convert.stream_event_to_proto)
        self.Register = observer.unary("Register", self._register)
        self.Unregister = observer.unary("Unregister", self._unregister)
        self.UpdateMetrics = observer.unary("UpdateMetrics", self._update_metrics)
        self.ListProviders = observer.unary("ListProviders", self._list_providers)
        self.GetUsage = observer.unary("GetUsage", self._get_usage)
        self.ListTenants = observer.unary("ListTenants", self._list_tenants)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register every RPC of RouterService with `server`, each request parsed by
        api/decoding.py (a request that does not parse is INVALID_ARGUMENT)."""
        service = pb.DESCRIPTOR.services_by_name["RouterService"]
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for method in service.methods:
            request_type = message_factory.GetMessageClass(method.input_type)
            response_type = message_factory.GetMessageClass(method.output_type)
            make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                    else grpc.unary_unary_rpc_method_handler)
            handlers[method.name] = make(
                getattr(self, method.name), request_deserializer=safe_deserializer(request_type),
                response_serializer=response_type.SerializeToString)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),))
        # As the generated helper does: calls on registered methods skip the generic lookup.
        server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service.full_name, handlers)

    def _deadline(self, context: Context) -> Deadline:
        remaining = context.time_remaining()
        if remaining is None:
            return Deadline.after(self._default_deadline_s)
        return Deadline.after(remaining)

    async def _route(self, request: pb.RouteRequest, context: Context, request_id: str
                     ) -> pb.RouteResponse:
        domain_request, at = convert.route_to_domain(request)
        return convert.decision_to_proto(self._router.route(domain_request, at))

    async def _chat(self, request: pb.ChatRequest, context: Context) -> d.ChatResponse:
        domain_request = convert.chat_to_domain(request, stream=False)
        return await self._router.chat(domain_request, self._deadline(context))

    def _stream_events(self, request: pb.StreamChatRequest, context: Context
                       ) -> AsyncIterator[d.RouterStreamEvent]:
        return self._router.stream(convert.chat_to_domain(request, stream=True),
                                   self._deadline(context))

    async def _route_tenanted(self, request: pb.RouteRequest, context: Context,
                              request_id: str) -> pb.RouteResponse:
        domain_request, at = convert.route_to_domain(request)
        return convert.decision_to_proto(self._router.route(with_tenant(domain_request), at))

    async def _chat_tenanted(self, request: pb.ChatRequest, context: Context
                             ) -> d.ChatResponse:
        domain_request = with_tenant(convert.chat_to_domain(request, stream=False))
        return await self._router.chat(domain_request, self._deadline(context))

    def _stream_tenanted(self, request: pb.StreamChatRequest, context: Context
                         ) -> AsyncIterator[d.RouterStreamEvent]:
        return self._router.stream(with_tenant(convert.chat_to_domain(request, stream=True)),
                                   self._deadline(context))

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

    async def _get_usage(self, request: pb.GetUsageRequest, context: Context,
                         request_id: str) -> pb.GetUsageResponse:
        if self._tenants is None:
            return pb.GetUsageResponse()  # no tenants configured: no spend is tracked
        return usage_to_proto(await self._tenants.usage(tuple(request.tenants)))

    async def _list_tenants(self, request: pb.ListTenantsRequest, context: Context,
                            request_id: str) -> pb.ListTenantsResponse:
        return tenants_to_proto(self._tenants.tenants if self._tenants is not None else ())
