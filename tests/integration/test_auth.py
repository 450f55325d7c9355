"""API-key auth: client keys call the data plane, admin keys everything; probes stay open."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import StartRouter

ENV = {"PROVIDER_ROUTER_CLIENT_KEYS": "client-key-1111", "PROVIDER_ROUTER_ADMIN_KEYS":
       "admin-key-2222"}


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def test_missing_key_is_unauthenticated(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_key_is_unauthenticated(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5,
                                        metadata=_auth("nope"))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_client_key_cannot_register(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5,
                                              metadata=_auth("client-key-1111"))
    assert listing.providers
    spec = pb.ProviderSpec(name="x", kind=pb.PROVIDER_KIND_MOCK, models=[pb.ModelSpec(name="m")])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5,
                                   metadata=_auth("client-key-1111"))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_admin_key_can_register_and_stream(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    spec = pb.ProviderSpec(name="x", kind=pb.PROVIDER_KIND_MOCK, models=[pb.ModelSpec(name="m")])
    response = await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5,
                                          metadata=(("x-api-key", "admin-key-2222"),))
    assert response.created
    request = pb.StreamChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])
    events = [e async for e in router.stub.StreamChat(request, timeout=5,
                                                      metadata=_auth("admin-key-2222"))]
    assert events[-1].WhichOneof("event") == "end"


async def test_stream_without_key_is_unauthenticated(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    request = pb.StreamChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in router.stub.StreamChat(request, timeout=5):
            pass
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_health_needs_no_key(start_router: StartRouter) -> None:
    router = await start_router(env=ENV)
    response = await router.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
