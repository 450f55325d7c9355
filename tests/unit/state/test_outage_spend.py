"""Tenant spend through a Redis outage: checks go on from what is known, nothing is lost."""

from __future__ import annotations

import pytest

from provider_router.state.outage_spend import OutageTolerantSpendStore
from provider_router.state.redis_link import RedisLink
from provider_router.state.redis_spend import RedisSpendStore
from provider_router.state.spend import PeriodKey, SpendEntry
from tests.redis.server import RedisServer

DAY, MONTH = "day:2026-12-04", "month:2026-12"
PERIODS = (PeriodKey(DAY, 3600.0), PeriodKey(MONTH, 86_400.0))


def entry(cost: float) -> SpendEntry:
    return SpendEntry("openai", "gpt-4o", cost, 10, 5)


async def test_an_outage_fails_nothing_and_loses_no_spend(own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None)
    remote = RedisSpendStore.from_url(own_redis_server.url)
    store = OutageTolerantSpendStore(remote, link, timeout_s=0.5)
    try:
        await store.record("acme", PERIODS, entry(1.0))
        assert await store.totals("acme", (DAY, MONTH)) == pytest.approx((1.0, 1.0))

        own_redis_server.kill()
        # Budget checks go on from the last totals Redis gave plus this replica's spend since.
        await store.record("acme", PERIODS, entry(0.25))
        await store.record("acme", PERIODS[1:], entry(0.5))
        assert not link.up
        assert await store.totals("acme", (DAY, MONTH)) == pytest.approx((1.25, 1.75))
        assert await store.totals("other", (DAY,)) == (0.0,)

        own_redis_server.restart()  # empty: the server keeps nothing on disk
        await link.wait_up()
        await store.flush()
        # What the outage held back reached Redis, once.
        assert await remote.totals("acme", (DAY, MONTH)) == pytest.approx((0.25, 0.75))
        assert await store.totals("acme", (DAY, MONTH)) == pytest.approx((0.25, 0.75))
    finally:
        await store.aclose()
        await link.aclose()
