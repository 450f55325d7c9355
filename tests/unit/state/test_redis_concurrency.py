"""Global max_concurrent on a real redis-server: counted over replicas, leases expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provider_router.state.redis_batch import AdmissionBatch
from provider_router.state.redis_concurrency import ALIVE_KEY, RedisSlots
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[list[RedisLink]]:
    made = [RedisLink.from_url(redis_server.url, None, watch_interval_s=0.05)
            for _ in range(3)]
    yield made
    for link in made:
        await link.aclose()


def slots(link: RedisLink, lease_s: float = 5.0, name: str = "") -> RedisSlots:
    me = name or f"replica-{id(link)}"
    batch = AdmissionBatch(link, 1.0, me, f"t:{ALIVE_KEY}", lease_s)
    return RedisSlots(batch, 3, "t:", me, lease_s=lease_s)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)  # the background flush of leaves


async def test_the_limit_holds_over_every_replica(links: list[RedisLink]) -> None:
    a, b, c = (slots(link) for link in links)
    taken = [await s.enter("p", 5) for s in (a, b, c, a, b, c, a)]
    assert taken == [True] * 5 + [False] * 2
    a.leave("p")
    await settle()
    assert await c.enter("p", 5)
    assert not await b.enter("p", 5)
    assert (a.held("p"), b.held("p"), c.held("p")) == (1, 2, 2)


async def test_slots_of_a_silent_replica_expire(links: list[RedisLink]) -> None:
    crashed, alive = slots(links[0], lease_s=0.3), slots(links[1], lease_s=0.3)
    for _ in range(3):
        assert await crashed.enter("p", 3)
    assert not await alive.enter("p", 3)
    await asyncio.sleep(0.5)  # `crashed` sends no heartbeat: its lease runs out
    assert await alive.enter("p", 3)


async def test_close_gives_the_slots_back(links: list[RedisLink]) -> None:
    a, b = slots(links[0]), slots(links[1])
    for _ in range(2):
        assert await a.enter("p", 2)
    await a.aclose()
    assert await b.enter("p", 2)
    assert await b.enter("p", 2)


async def test_a_flush_corrects_a_count_redis_lost(links: list[RedisLink]) -> None:
    a = slots(links[0])
    assert await a.enter("p", 2)
    await links[0].client.delete("t:cc:p")  # as after a Redis restart
    await a.heartbeat()
    assert int(await links[0].client.hlen("t:cc:p")) == 1
    b = slots(links[1])
    assert await b.enter("p", 2)
    assert not await b.enter("p", 2)


async def test_redis_down_admits_against_the_local_share(
        own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    a = slots(link, name="replica-a")
    try:
        own_redis_server.kill()
        taken = [await a.enter("p", 7) for _ in range(4)]
        assert not link.up
        assert taken == [True, True, True, False]  # ceil(7 / 3)
        a.leave("p")
        assert await a.enter("p", 7)
        own_redis_server.start()
        for _ in range(200):
            if link.up:
                break
            await asyncio.sleep(0.05)
        await a.heartbeat()  # the resync: Redis learns the 3 slots held
        assert await link.client.hget("t:cc:p", "replica-a") == b"3"
    finally:
        await link.aclose()
