"""The registry on a shared store (a real redis-server): per-replica config overlaid by the
fleet's runtime registrations, a live feed, and writes refused while Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from provider_router.errors import StateUnavailableError
from provider_router.routing.registry import Registry
from provider_router.routing.settings import RoutingSettings
from provider_router.state.redis import RedisStateStore
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer

from .factories import provider

Replica = Callable[[], Registry]


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `condition()` became true within `seconds` (generous: the CI box is loaded)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Replica]:
    """replica() → an unloaded Registry with a link and a store of its own, on one Redis."""
    opened: list[tuple[Registry, RedisStateStore, RedisLink]] = []

    def replica() -> Registry:
        link = RedisLink.from_url(redis_server.url, None, watch_interval_s=0.05)
        store = RedisStateStore(link)
        registry = Registry(store, RoutingSettings())
        opened.append((registry, store, link))
        return registry

    yield replica
    for registry, store, link in opened:
        await registry.aclose()
        await store.aclose()
        await link.aclose()


async def test_registrations_reach_every_replica_and_survive_a_restart(
        replicas: Replica) -> None:
    a, b = replicas(), replicas()
    await a.load([provider("config-a")])
    await b.load([provider("config-b")])
    await a.register(provider("runtime", priority=4))
    assert await until(lambda: "runtime" in b.snapshot().providers)
    assert b.snapshot().providers["runtime"].priority == 4
    assert "config-a" not in b.snapshot().providers  # config stays per replica

    c = replicas()  # a replica started later loads the full set
    await c.load([])
    assert set(c.snapshot().providers) == {"runtime"}

    await b.unregister("runtime")
    assert await until(lambda: "runtime" not in a.snapshot().providers
                       and "runtime" not in c.snapshot().providers)


async def test_a_runtime_registration_wins_by_name_and_unregister_falls_back_to_config(
        replicas: Replica) -> None:
    shared_name = provider("shared", priority=1)
    a, b = replicas(), replicas()
    await a.load([shared_name])
    await b.load([shared_name])
    await a.register(replace(shared_name, priority=9))
    assert await until(lambda: b.snapshot().providers["shared"].priority == 9)

    late = replicas()  # its config names it too, yet the fleet's registration wins at start
    await late.load([shared_name])
    assert late.snapshot().providers["shared"].priority == 9
    assert await until(lambda: a.snapshot().providers["shared"].priority == 9)  # not deleted

    await b.unregister("shared")  # the registration goes; every config copy serves again
    assert b.snapshot().providers["shared"].priority == 1
    assert await until(lambda: a.snapshot().providers["shared"].priority == 1
                       and late.snapshot().providers["shared"].priority == 1)


async def test_register_while_redis_is_down_fails_and_changes_nothing(
        own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    store = RedisStateStore(link)
    registry = Registry(store, RoutingSettings())
    await registry.load([provider("config")])
    await registry.register(provider("kept", priority=1))
    own_redis_server.kill()
    with pytest.raises(StateUnavailableError, match="registrations cannot change"):
        await registry.register(provider("new"))
    with pytest.raises(StateUnavailableError):
        await registry.register(provider("kept", priority=2))
    with pytest.raises(StateUnavailableError):
        await registry.unregister("kept")
    providers = registry.snapshot().providers
    assert set(providers) == {"config", "kept"} and providers["kept"].priority == 1
    await registry.aclose()
    await store.aclose()
    await link.aclose()


async def test_a_replica_starts_on_its_config_while_redis_is_down_and_catches_up(
        own_redis_server: RedisServer) -> None:
    writer_link = RedisLink.from_url(own_redis_server.url, None)
    own_redis_server.kill()
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    assert not await link.check()
    store = RedisStateStore(link)
    registry = Registry(store, RoutingSettings())
    await asyncio.wait_for(registry.load([provider("config")]), 10)
    assert set(registry.snapshot().providers) == {"config"}
    own_redis_server.restart()
    await Registry(RedisStateStore(writer_link), RoutingSettings()).register(provider("late"))
    assert await until(lambda: set(registry.snapshot().providers) == {"config", "late"})
    await registry.aclose()
    await store.aclose()
    await link.aclose()
    await writer_link.aclose()
