"""Shared breakers on a real redis-server: opened by one replica, open on all; one trial."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from provider_router.domain import BreakerState
from provider_router.errors import ProviderError
from provider_router.resilience.breaker import BreakerConfig, BreakerOpenError, ProviderBreakers
from provider_router.state.breaker_sync import SharedBreakers
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer

RESET_S = 0.4


class Replica:
    """One process's breakers and their sync layer."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.breakers = ProviderBreakers(BreakerConfig(fail_max=2, reset_timeout_s=RESET_S,
                                                       ramp_s=0))
        self.sync = SharedBreakers(link, self.breakers, "t:", poll_s=0.05, trial_ttl_s=5.0)

    def fail(self, provider: str = "p") -> None:
        with pytest.raises(ProviderError), self.breakers.guard(provider, "m"):
            raise ProviderError(provider, "boom", status_code=500)

    def succeed(self, provider: str = "p") -> None:
        with self.breakers.guard(provider, "m"):
            pass


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait (generously: the machine is loaded) until `check()` holds."""
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[list[Replica]]:
    made = [Replica(RedisLink.from_url(redis_server.url, None, watch_interval_s=0.05))
            for _ in range(3)]
    for replica in made:
        replica.sync.start()
    yield made
    for replica in made:
        await replica.sync.aclose()
        await replica.link.aclose()


async def test_opened_on_one_replica_is_open_on_all(replicas: list[Replica]) -> None:
    a, b, c = replicas
    a.fail()
    a.fail()
    assert a.breakers.state("p") is BreakerState.OPEN
    await eventually(lambda: b.breakers.state("p") is BreakerState.OPEN
                     and c.breakers.state("p") is BreakerState.OPEN)
    assert not b.breakers.allows("p", "m")
    with pytest.raises(BreakerOpenError), b.breakers.guard("p", "m"):
        pass
    # Adopted for (about) the time the opener has left, not a fresh reset timeout.
    assert 0.0 < b.breakers.open_for("p", "m") <= RESET_S


async def test_one_replica_at_a_time_sends_the_trial(replicas: list[Replica]) -> None:
    a = replicas[0]
    a.fail()
    a.fail()
    await eventually(lambda: all(r.breakers.state("p") is BreakerState.OPEN for r in replicas))
    await asyncio.sleep(RESET_S)
    # Every replica asks; exactly one wins the lock and may send the trial.
    await eventually(lambda: sum(r.breakers.allows("p", "m") for r in replicas) == 1)
    await asyncio.sleep(0.3)  # later asks of the losers still lose
    allowed = [r for r in replicas if r.breakers.allows("p", "m")]
    assert len(allowed) == 1
    winner = allowed[0]
    winner.succeed()
    assert winner.breakers.state("p") is BreakerState.CLOSED
    await eventually(lambda: all(r.breakers.state("p") is BreakerState.CLOSED for r in replicas))
    assert await a.link.client.exists("t:breaker-trial:p\x1fm") == 0


async def test_a_failed_trial_opens_every_replica_again(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    a.fail()
    a.fail()
    await eventually(lambda: b.breakers.state("p") is BreakerState.OPEN)
    await asyncio.sleep(RESET_S)
    await eventually(lambda: any(r.breakers.allows("p", "m") for r in replicas))
    winner = next(r for r in replicas if r.breakers.allows("p", "m"))
    winner.fail()  # the trial fails: open again, with a fresh reset timeout
    others = [r for r in replicas if r is not winner]
    await eventually(lambda: all(r.breakers.open_for("p", "m") > 0.0 for r in others))
    assert all(not r.breakers.allows("p", "m") for r in replicas)


async def test_redis_down_keeps_local_breakers_and_resyncs(
        own_redis_server: RedisServer) -> None:
    a = Replica(RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05))
    b = Replica(RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05))
    a.sync.start()
    b.sync.start()
    try:
        own_redis_server.kill()
        await a.link.check()
        assert not a.link.up
        a.fail()
        a.fail()
        assert a.breakers.state("p") is BreakerState.OPEN  # local breakers keep working
        await asyncio.sleep(RESET_S)
        assert a.breakers.allows("p", "m")  # the trial needs no lock while Redis is down
        own_redis_server.start()
        await b.link.check()
        # A comes back, writes its open breaker, and B adopts it.
        await eventually(lambda: a.link.up)
        await eventually(lambda: b.breakers.state("p") is BreakerState.OPEN)
    finally:
        for replica in (a, b):
            await replica.sync.aclose()
            await replica.link.aclose()
