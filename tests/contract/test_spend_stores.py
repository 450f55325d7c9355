"""The SpendStore contract, over the in-process store and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provider_router.state.redis_spend import RedisSpendStore
from provider_router.state.spend import MemorySpendStore, PeriodKey, SpendEntry, SpendStore
from provider_router.tenants import SpendLine
from tests.redis.server import RedisServer

DAY, MONTH = "day:2026-12-04", "month:2026-12"
PERIODS = (PeriodKey(DAY, 3600.0), PeriodKey(MONTH, 86_400.0))


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SpendStore]:
    if request.param == "memory":
        yield MemorySpendStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisSpendStore.from_url(server.url)
    yield redis_store
    await redis_store.aclose()


async def test_an_unknown_tenant_has_spent_nothing(store: SpendStore) -> None:
    assert await store.totals("acme", (DAY, MONTH)) == (0.0, 0.0)
    assert await store.lines("acme", DAY) == ()


async def test_records_add_up_per_period_and_line(store: SpendStore) -> None:
    await store.record("acme", PERIODS, SpendEntry("openai", "gpt-4o", 0.25, 100, 20))
    await store.record("acme", PERIODS, SpendEntry("openai", "gpt-4o", 0.5, 10, 2))
    await store.record("acme", PERIODS[1:], SpendEntry("anthropic", "claude", 1.0, 7, 3))
    day, month = await store.totals("acme", (DAY, MONTH))
    assert day == pytest.approx(0.75)
    assert month == pytest.approx(1.75)
    assert await store.lines("acme", DAY) == (SpendLine("openai", "gpt-4o", 0.75, 110, 22, 2),)
    assert await store.lines("acme", MONTH) == (
        SpendLine("anthropic", "claude", 1.0, 7, 3, 1),
        SpendLine("openai", "gpt-4o", 0.75, 110, 22, 2))
    assert await store.totals("beta", (DAY,)) == (0.0,)


async def test_names_with_separators_do_not_collide(store: SpendStore) -> None:
    await store.record("t", PERIODS[:1], SpendEntry("a:b", "c/d:e", 1.0, 1, 1))
    await store.record("t", PERIODS[:1], SpendEntry("a", "b:c/d:e", 2.0, 1, 1))
    lines = await store.lines("t", DAY)
    assert [(line.provider, line.model, line.cost_usd) for line in lines] == [
        ("a", "b:c/d:e", 2.0), ("a:b", "c/d:e", 1.0)]


async def test_concurrent_records_lose_nothing(store: SpendStore) -> None:
    await asyncio.gather(*(store.record("acme", PERIODS, SpendEntry("p", "m", 0.125, 1, 1))
                           for _ in range(200)))
    assert await store.totals("acme", (DAY, MONTH)) == (pytest.approx(25.0),
                                                         pytest.approx(25.0))
    [line] = await store.lines("acme", MONTH)
    assert line.requests == 200


async def test_memory_entries_expire_with_their_period() -> None:
    now = [1000.0]
    store = MemorySpendStore(clock=lambda: now[0])
    await store.record("acme", PERIODS, SpendEntry("p", "m", 1.0, 1, 1))
    now[0] += 3601.0
    assert await store.totals("acme", (DAY, MONTH)) == (0.0, 1.0)


async def test_redis_keys_carry_an_expiry(redis_server: RedisServer) -> None:
    store = RedisSpendStore.from_url(redis_server.url, prefix="t:")
    await store.record("acme", PERIODS, SpendEntry("p", "m", 1.0, 1, 1))
    import redis.asyncio as aioredis
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert 0 < await client.ttl(f"t:spend:acme:{DAY}") <= 3600
        assert 3600 < await client.ttl(f"t:spend:acme:{MONTH}") <= 86_400
    finally:
        await client.aclose()
        await store.aclose()


async def test_two_redis_handles_share_spend(redis_server: RedisServer) -> None:
    one, two = (RedisSpendStore.from_url(redis_server.url) for _ in range(2))
    try:
        await one.record("acme", PERIODS, SpendEntry("p", "m", 2.0, 1, 1))
        assert await two.totals("acme", (DAY,)) == (2.0,)
    finally:
        await one.aclose()
        await two.aclose()
