"""Global GCRA buckets on a real redis-server: shared by replicas, local share when it is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provider_router.resilience.ratelimit import Charge
from provider_router.state.redis_batch import AdmissionBatch
from provider_router.state.redis_limits import LocalShare, RedisBucketStore
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer

PREFIX = "t:"


def rpm(capacity: float, cost: float = 1.0) -> Charge:
    # capacity per minute, refilled at capacity/60 per second.
    return Charge("p/rpm", capacity, capacity / 60.0, cost)


def tpm(capacity: float, cost: float) -> Charge:
    return Charge("p/tpm", capacity, capacity / 60.0, cost)


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[list[RedisLink]]:
    """Three links: three replicas on one Redis."""
    made = [RedisLink.from_url(redis_server.url, None, watch_interval_s=0.05)
            for _ in range(3)]
    yield made
    for link in made:
        await link.aclose()


def store_on(link: RedisLink, replicas: int, timeout_s: float = 1.0) -> RedisBucketStore:
    batch = AdmissionBatch(link, timeout_s, "replica", f"{PREFIX}alive", 5.0)
    return RedisBucketStore(batch, replicas, PREFIX)


def stores(links: list[RedisLink], timeout_s: float = 1.0) -> list[RedisBucketStore]:
    return [store_on(link, len(links), timeout_s) for link in links]


async def test_admissions_of_one_turn_share_a_batch_and_stay_exact(
        links: list[RedisLink]) -> None:
    store = stores(links)[0]
    # 50 admissions in one turn of the loop: one script call, each decided on its own.
    waits = await asyncio.gather(*(store.take([rpm(20)], now=0.0) for _ in range(50)))
    assert sum(w == 0.0 for w in waits) == 20
    assert all(w > 0.0 for w in waits[20:])  # queue order: the first 20 got in


async def test_three_replicas_share_one_bucket(links: list[RedisLink]) -> None:
    replicas = stores(links)
    admitted = 0
    for i in range(30):
        if await replicas[i % 3].take([rpm(12)], now=0.0) == 0.0:
            admitted += 1
    # 12 in the bucket and at most a refill of 0.2/s during the loop: far fewer than 30.
    assert 12 <= admitted <= 13
    wait = await replicas[0].take([rpm(12)], now=0.0)
    assert 0.0 < wait <= 5.0  # one request refills in 60/12 = 5 s


async def test_all_charges_or_none(links: list[RedisLink]) -> None:
    store = stores(links)[0]
    assert await store.take([rpm(100), tpm(1000, 900)], now=0.0) == 0.0
    # The rpm bucket has room, the tpm bucket does not: nothing is taken from either.
    assert await store.take([rpm(100), tpm(1000, 900)], now=0.0) > 0.0
    client = links[0].client
    assert float(await client.get(f"{PREFIX}rl:p/rpm")) > 0.0
    for _ in range(99):
        assert await store.take([rpm(100)], now=0.0) == 0.0
    assert await store.take([rpm(100)], now=0.0) > 0.0


async def test_credit_gives_back_and_debt_blocks(links: list[RedisLink]) -> None:
    store = stores(links)[0]
    assert await store.take([tpm(600, 600)], now=0.0) == 0.0
    assert await store.take([tpm(600, 300)], now=0.0) > 0.0
    await store.credit(tpm(600, 400), now=0.0)  # the call used 200 of its 600
    assert await store.take([tpm(600, 300)], now=0.0) == 0.0
    await store.credit(tpm(600, -600), now=0.0)  # a debt: an overrun of 600
    wait = await store.take([tpm(600, 100)], now=0.0)
    assert wait > 59.0  # the debt is paid back at 10 tokens/s first


async def test_peek_answers_from_the_last_denial(links: list[RedisLink]) -> None:
    store = stores(links)[0]
    assert store.peek([rpm(1)], now=10.0) == 0.0
    assert await store.take([rpm(1)], now=10.0) == 0.0
    wait = await store.take([rpm(1)], now=10.0)
    assert wait > 0.0
    assert store.peek([rpm(1)], now=10.0) == pytest.approx(wait)
    assert store.peek([rpm(1)], now=10.0 + wait) == 0.0


async def test_forget_drops_the_global_bucket(links: list[RedisLink]) -> None:
    store = stores(links)[0]
    assert await store.take([rpm(1)], now=0.0) == 0.0
    await store.forget(["p/rpm", "p/tpm"])
    assert await links[0].client.exists(f"{PREFIX}rl:p/rpm") == 0
    assert await store.take([rpm(1)], now=0.0) == 0.0


def test_local_share_is_limit_over_replicas() -> None:
    share = LocalShare(3)
    admitted = sum(share.take([rpm(600)], now=0.0) == 0.0 for _ in range(1000))
    assert admitted == 200
    # A call bigger than the share waits for a full share instead of forever.
    assert share.scaled(tpm(300, 250)).cost == 100


async def test_redis_down_falls_back_to_the_local_share_and_comes_back(
        own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    store = store_on(link, 3)
    try:
        assert await store.take([rpm(60)], now=0.0) == 0.0
        own_redis_server.kill()
        # No exception reaches the caller: the first failure marks the link down.
        admitted = sum([await store.take([rpm(60)], now=0.0) == 0.0 for _ in range(40)])
        assert not link.up
        assert admitted == 20  # 60 / 3 replicas
        assert store.peek([rpm(60)], now=0.0) > 0.0
        own_redis_server.start()
        for _ in range(200):
            if link.up:
                break
            await asyncio.sleep(0.05)
        assert link.up
        # Back on the global bucket, which Redis lost with its restart: a fresh, full one.
        assert await store.take([rpm(60)], now=0.0) == 0.0
        assert int(await link.client.exists(f"{PREFIX}rl:p/rpm")) == 1
    finally:
        await link.aclose()


async def test_a_slow_redis_costs_at_most_the_budget(own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    pauser = RedisLink.from_url(own_redis_server.url, None)
    store = store_on(link, 2, 0.05)
    try:
        await link.client.ping()
        # Redis stops answering every client for 2 s (a stall, not a crash).
        await pauser.client.execute_command("CLIENT", "PAUSE", "2000", "ALL")
        wait = await asyncio.wait_for(store.take([rpm(60)], now=0.0), timeout=0.9)
        assert wait == 0.0  # admitted by the local share, within the budget
        # The late call is not cancelled; once it fails (the link's 1 s socket timeout)
        # the link is down and everything is decided locally until Redis answers again.
        for _ in range(100):
            if not link.up:
                break
            await asyncio.sleep(0.05)
        assert not link.up
    finally:
        await pauser.aclose()
        await link.aclose()
