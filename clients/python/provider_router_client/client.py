"""RouterClient (blocking) and AsyncRouterClient (asyncio) over the generated stubs.

Both send `authorization: Bearer <api_key>` when a key is given, accept a per-call
`timeout` in seconds (the gRPC deadline the router spends across its whole failover chain),
and raise grpc.RpcError on failure; use `grpc_status.rpc_status.from_call` for details.

TLS: `tls=True` verifies the server against the system trust store; `ca_file` trusts a
private CA instead; `cert_file` and `key_file` present a client certificate (mTLS). Any of
the files implies TLS. (`credentials` takes ready-made grpc.ChannelCredentials instead.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
PathLike = str | Path


def tls_credentials(ca_file: PathLike | None = None, cert_file: PathLike | None = None,
                    key_file: PathLike | None = None) -> grpc.ChannelCredentials:
    """Channel credentials from PEM files: the CA to trust (None = the system's) and, for
    mTLS, the client certificate chain and its key (both or neither)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None)


def _credentials(credentials: grpc.ChannelCredentials | None, tls: bool,
                 ca_file: PathLike | None, cert_file: PathLike | None,
                 key_file: PathLike | None) -> grpc.ChannelCredentials | None:
    if credentials is not None:
        return credentials
    if tls or ca_file or cert_file or key_file:
        return tls_credentials(ca_file, cert_file, key_file)
    return None


def text_request(prompt: str, model: str = "", system: str = "",
                 max_tokens: int | None = None,
                 fallbacks: Sequence[str] = ()) -> pb.ChatRequest:
    """A ChatRequest for one user prompt (and an optional system prompt); `fallbacks` are
    "provider/model" targets to try, in order, after the routed ones."""
    messages = [pb.ChatMessage(role=pb.ROLE_SYSTEM, content=system)] if system else []
    messages.append(pb.ChatMessage(role=pb.ROLE_USER, content=prompt))
    targets = [pb.RouteTarget(provider=f.partition("/")[0], model=f.partition("/")[2])
               for f in fallbacks]
    request = pb.ChatRequest(routing=pb.RoutingOptions(model=model, fallbacks=targets),
                             messages=messages)
    if max_tokens is not None:
        request.parameters.max_tokens = max_tokens
    return request


def _metadata(api_key: str | None, request_id: str | None = None) -> Metadata:
    pairs: list[tuple[str, str]] = []
    if api_key:
        pairs.append(("authorization", f"Bearer {api_key}"))
    if request_id:
        pairs.append(("x-request-id", request_id))
    return tuple(pairs)


class RouterClient:
    """Blocking client; use as a context manager or call close()."""

    def __init__(self, target: str, api_key: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, *, tls: bool = False,
                 ca_file: PathLike | None = None, cert_file: PathLike | None = None,
                 key_file: PathLike | None = None) -> None:
        credentials = _credentials(credentials, tls, ca_file, cert_file, key_file)
        self._channel = (grpc.secure_channel(target, credentials) if credentials
                         else grpc.insecure_channel(target))
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = _metadata(api_key)

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def route(self, request: pb.RouteRequest, timeout: float | None = None) -> pb.RouteResponse:
        """Where would this request go, and why."""
        return self._stub.Route(request, timeout=timeout, metadata=self._metadata)

    def chat(self, request: pb.ChatRequest, timeout: float | None = None) -> pb.ChatResponse:
        """One complete answer."""
        return self._stub.Chat(request, timeout=timeout, metadata=self._metadata)

    def stream_chat(self, request: pb.StreamChatRequest, timeout: float | None = None
                    ) -> Iterator[pb.StreamChatResponse]:
        """The answer as a stream of events (start, deltas, restart, end)."""
        return iter(self._stub.StreamChat(request, timeout=timeout, metadata=self._metadata))

    def register(self, spec: pb.ProviderSpec, validate_only: bool = False,
                 timeout: float | None = None) -> pb.RegisterResponse:
        """Add or replace a provider (admin)."""
        request = pb.RegisterRequest(provider=spec, validate_only=validate_only)
        return self._stub.Register(request, timeout=timeout, metadata=self._metadata)

    def unregister(self, name: str, timeout: float | None = None) -> pb.UnregisterResponse:
        """Remove a provider (admin)."""
        return self._stub.Unregister(pb.UnregisterRequest(name=name), timeout=timeout,
                                     metadata=self._metadata)

    def update_metrics(self, request: pb.UpdateMetricsRequest, timeout: float | None = None
                       ) -> pb.UpdateMetricsResponse:
        """Report external metrics for a provider (admin)."""
        return self._stub.UpdateMetrics(request, timeout=timeout, metadata=self._metadata)

    def list_providers(self, names: Sequence[str] = (), timeout: float | None = None
                       ) -> pb.ListProvidersResponse:
        """Every provider with spec and live status."""
        return self._stub.ListProviders(pb.ListProvidersRequest(names=list(names)),
                                        timeout=timeout, metadata=self._metadata)

    def get_usage(self, tenants: Sequence[str] = (), timeout: float | None = None
                  ) -> pb.GetUsageResponse:
        """Spend per tenant, provider and model this day and month (admin)."""
        return self._stub.GetUsage(pb.GetUsageRequest(tenants=list(tenants)), timeout=timeout,
                                   metadata=self._metadata)

    def list_tenants(self, timeout: float | None = None) -> pb.ListTenantsResponse:
        """Every configured tenant with its limits (admin)."""
        return self._stub.ListTenants(pb.ListTenantsRequest(), timeout=timeout,
                                      metadata=self._metadata)

    def health(self, service: str = "", timeout: float | None = None) -> int:
        """The grpc.health.v1 serving status of a service ("" = overall)."""
        response = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                      timeout=timeout)
        return int(response.status)


class AsyncRouterClient:
    """asyncio client; use `async with` or await close()."""

    def __init__(self, target: str, api_key: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, *, tls: bool = False,
                 ca_file: PathLike | None = None, cert_file: PathLike | None = None,
                 key_file: PathLike | None = None) -> None:
        # The PEM files are read here, once, before any call (a few small reads).
        credentials = _credentials(credentials, tls, ca_file, cert_file, key_file)
        self._channel = (grpc.aio.secure_channel(target, credentials) if credentials
                         else grpc.aio.insecure_channel(target))
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = _metadata(api_key)

    async def __aenter__(self) -> AsyncRouterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def route(self, request: pb.RouteRequest, timeout: float | None = None
                    ) -> pb.RouteResponse:
        """Where would this request go, and why."""
        return await self._stub.Route(request, timeout=timeout, metadata=self._metadata)

    async def chat(self, request: pb.ChatRequest, timeout: float | None = None
                   ) -> pb.ChatResponse:
        """One complete answer."""
        return await self._stub.Chat(request, timeout=timeout, metadata=self._metadata)

    async def stream_chat(self, request: pb.StreamChatRequest, timeout: float | None = None
                          ) -> AsyncIterator[pb.StreamChatResponse]:
        """The answer as a stream of events (start, deltas, restart, end)."""
        call = self._stub.StreamChat(request, timeout=timeout, metadata=self._metadata)
        async for event in call:
            yield event

    async def register(self, spec: pb.ProviderSpec, validate_only: bool = False,
                       timeout: float | None = None) -> pb.RegisterResponse:
        """Add or replace a provider (admin)."""
        request = pb.RegisterRequest(provider=spec, validate_only=validate_only)
        return await self._stub.Register(request, timeout=timeout, metadata=self._metadata)

    async def unregister(self, name: str, timeout: float | None = None
                         ) -> pb.UnregisterResponse:
        """Remove a provider (admin)."""
        return await self._stub.Unregister(pb.UnregisterRequest(name=name), timeout=timeout,
                                           metadata=self._metadata)

    async def update_metrics(self, request: pb.UpdateMetricsRequest,
                             timeout: float | None = None) -> pb.UpdateMetricsResponse:
        """Report external metrics for a provider (admin)."""
        return await self._stub.UpdateMetrics(request, timeout=timeout, metadata=self._metadata)

    async def list_providers(self, names: Sequence[str] = (), timeout: float | None = None
                             ) -> pb.ListProvidersResponse:
        """Every provider with spec and live status."""
        return await self._stub.ListProviders(pb.ListProvidersRequest(names=list(names)),
                                              timeout=timeout, metadata=self._metadata)

    async def get_usage(self, tenants: Sequence[str] = (), timeout: float | None = None
                        ) -> pb.GetUsageResponse:
        """Spend per tenant, provider and model this day and month (admin)."""
        return await self._stub.GetUsage(pb.GetUsageRequest(tenants=list(tenants)),
                                         timeout=timeout, metadata=self._metadata)

    async def list_tenants(self, timeout: float | None = None) -> pb.ListTenantsResponse:
        """Every configured tenant with its limits (admin)."""
        return await self._stub.ListTenants(pb.ListTenantsRequest(), timeout=timeout,
                                            metadata=self._metadata)

    async def health(self, service: str = "", timeout: float | None = None) -> int:
        """The grpc.health.v1 serving status of a service ("" = overall)."""
        response = await self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                            timeout=timeout)
        return int(response.status)
