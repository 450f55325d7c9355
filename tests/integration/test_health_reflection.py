"""Health (Check, Watch, drain) and server reflection against the real server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.integration.conftest import StartRouter

SERVICE = "provider_router.v1.RouterService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _check(router: object, service: str) -> int:
    response = await router.health.Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


async def test_not_serving_until_started_then_serving(start_router: StartRouter) -> None:
    router = await start_router(start=False)
    await router.app.server.start()  # transport up, app not yet declared ready
    assert await _check(router, "") == NOT_SERVING
    assert await _check(router, SERVICE) == NOT_SERVING
    await router.app.health.serving()
    assert await _check(router, "") == SERVING
    assert await _check(router, SERVICE) == SERVING


async def test_unknown_service_is_not_found(start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _check(router, "no.such.Service")
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_not_serving_during_drain_and_in_flight_calls_finish(
        start_router: StartRouter) -> None:
    router = await start_router()
    shutdown = asyncio.create_task(router.app.shutdown(drain_delay_s=0.5, grace_s=2))
    await asyncio.sleep(0.1)
    # During the drain window the server still answers, but says NOT_SERVING.
    assert await _check(router, "") == NOT_SERVING
    assert await _check(router, SERVICE) == NOT_SERVING
    await shutdown


async def test_watch_reports_changes(start_router: StartRouter) -> None:
    router = await start_router()
    call = router.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    first = await call.read()
    assert first.status == SERVING
    await router.app.health.draining()
    second = await call.read()
    assert second.status == NOT_SERVING
    call.cancel()


async def test_reflection_lists_the_services(start_router: StartRouter) -> None:
    router = await start_router()
    stub = reflection_pb2_grpc.ServerReflectionStub(router.channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(requests(), timeout=5):
        names |= {s.name for s in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_reflection_describes_the_contract(start_router: StartRouter) -> None:
    router = await start_router()
    stub = reflection_pb2_grpc.ServerReflectionStub(router.channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)

    async for response in stub.ServerReflectionInfo(requests(), timeout=5):
        protos = response.file_descriptor_response.file_descriptor_proto
        assert protos, "reflection returned no file descriptor"
        from google.protobuf import descriptor_pb2

        files = [descriptor_pb2.FileDescriptorProto.FromString(p) for p in protos]
        methods = {m.name for f in files for s in f.service for m in s.method}
        assert {"Route", "Chat", "StreamChat", "Register", "Unregister", "UpdateMetrics",
                "ListProviders"} <= methods
