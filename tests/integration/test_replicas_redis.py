"""Two in-process routers on one real redis-server: shared registrations, Redis killed and
restarted under traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2

from provider_router.api.health import STATE_SERVICE
from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import RunningRouter, StartRouter
from tests.redis.server import RedisServer

EXTRA = pb.ProviderSpec(name="extra", kind=pb.PROVIDER_KIND_MOCK,
                        models=[pb.ModelSpec(name="extra-1")])


def _chat(model: str = "") -> pb.ChatRequest:
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> float:
    """Seconds until `await condition()` is true; fails after `seconds` (generous)."""
    start = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, "condition not met in time"
        await asyncio.sleep(0.02)


async def routes_to(router: RunningRouter, provider: str, model: str) -> bool:
    """Whether `router` routes `model` to `provider` now (NOT_FOUND while it does not know it)."""
    try:
        decision = await router.stub.Route(pb.RouteRequest(routing=pb.RoutingOptions(
            model=model)), timeout=5)
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.NOT_FOUND
        return False
    return decision.provider == provider


async def knows(router: RunningRouter, name: str) -> bool:
    """Whether `name` is in `router`'s ListProviders."""
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    return name in {p.spec.name for p in listing.providers}


async def forgot(router: RunningRouter, name: str) -> bool:
    """Whether `name` is absent from `router`'s ListProviders."""
    return not await knows(router, name)


async def state_status(router: RunningRouter) -> int:
    """The health service's status of the state backend."""
    reply = await router.health.Check(health_pb2.HealthCheckRequest(service=STATE_SERVICE),
                                      timeout=5)
    return int(reply.status)


def backend_up(router: RunningRouter) -> float | None:
    """provider_router_state_backend_up of `router`."""
    return router.app.metrics.registry.get_sample_value("provider_router_state_backend_up")


async def chats(router: RunningRouter, count: int) -> list[str]:
    """`count` Chats on the mock provider; the codes of those that failed."""
    failures: list[str] = []
    for _ in range(count):
        try:
            reply = await router.stub.Chat(_chat(), timeout=10)
            assert reply.provider == "mock"
        except grpc.aio.AioRpcError as error:
            failures.append(error.code().name)
    return failures


async def test_two_replicas_share_registrations_and_survive_redis_going_away(
        start_router: StartRouter, own_redis_server: RedisServer) -> None:
    config = f'[state]\nurl = "{own_redis_server.url}"\n'
    a, b = await start_router(config, env={}), await start_router(config, env={})
    assert backend_up(a) == backend_up(b) == 1.0
    assert await state_status(a) == health_pb2.HealthCheckResponse.SERVING

    await a.stub.Register(pb.RegisterRequest(provider=EXTRA), timeout=5)
    seen_s = await until(lambda: routes_to(b, "extra", "extra-1"))
    print(f"registration on A routed by B after {seen_s * 1000:.0f} ms")
    reply = await b.stub.Chat(_chat("extra-1"), timeout=10)
    assert (reply.provider, reply.model) == ("extra", "extra-1")

    await a.stub.Unregister(pb.UnregisterRequest(name="extra"), timeout=5)
    gone_s = await until(lambda: forgot(b, "extra"))
    print(f"unregistration on A applied by B after {gone_s * 1000:.0f} ms")

    own_redis_server.kill()
    # Traffic during the outage: nothing fails because Redis did (the first failures mark the
    # links down; the registry serves its last known state).
    failures = await asyncio.gather(chats(a, 40), chats(b, 40))
    assert failures == [[], []]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await a.stub.Register(pb.RegisterRequest(provider=EXTRA), timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "registrations cannot change until it is back" in (caught.value.details() or "")
    assert not await knows(a, "extra")  # the refused registration was not kept locally
    await until(lambda: _all_down(a, b))
    assert await chats(a, 10) == [] and await chats(b, 10) == []

    own_redis_server.restart()
    await until(lambda: _all_up(a, b))
    await b.stub.Register(pb.RegisterRequest(provider=EXTRA), timeout=5)
    await until(lambda: routes_to(a, "extra", "extra-1"))
    reply = await a.stub.Chat(_chat("extra-1"), timeout=10)
    assert reply.provider == "extra"


async def _all_down(*routers: RunningRouter) -> bool:
    statuses = [await state_status(r) for r in routers]
    return (all(s == health_pb2.HealthCheckResponse.NOT_SERVING for s in statuses)
            and all(backend_up(r) == 0.0 for r in routers))


async def _all_up(*routers: RunningRouter) -> bool:
    statuses = [await state_status(r) for r in routers]
    return (all(s == health_pb2.HealthCheckResponse.SERVING for s in statuses)
            and all(backend_up(r) == 1.0 for r in routers))
