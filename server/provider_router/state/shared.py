"""Everything several replicas share on Redis besides the registry, built and run together.

`SharedState` bundles the global limits (GCRA buckets and concurrency slots), the breaker
sync and the stats exchange of one process, all on its one `RedisLink` and under one replica
id. The composition root builds it when `[state] url` names Redis, hands `limits` and `slots`
to the resilience layer, starts it with the server and closes it before the link.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from provider_router.resilience.breaker import ProviderBreakers
from provider_router.routing.stats import StatsBook
from provider_router.state.breaker_sync import SharedBreakers
from provider_router.state.redis_batch import AdmissionBatch
from provider_router.state.redis_concurrency import ALIVE_KEY, RedisSlots
from provider_router.state.redis_limits import RedisBucketStore
from provider_router.state.redis_link import RedisLink
from provider_router.state.stats_sync import SharedStats

LEASE_S = 5.0
"""A replica silent this long (no admission, no heartbeat) loses its concurrency slots."""


@dataclass(frozen=True, slots=True)
class SharedState:
    """One replica's shared limits, breakers and statistics."""

    limits: RedisBucketStore
    slots: RedisSlots
    breakers: SharedBreakers
    stats: SharedStats

    @classmethod
    def open(cls, link: RedisLink, breakers: ProviderBreakers, stats: StatsBook, *,
             replicas: int, timeout_s: float, key_prefix: str) -> SharedState:
        """Build every part on `link` (nothing runs until `start`)."""
        me = uuid.uuid4().hex
        batch = AdmissionBatch(link, timeout_s, me, key_prefix + ALIVE_KEY, LEASE_S)
        return cls(
            limits=RedisBucketStore(batch, replicas, key_prefix),
            slots=RedisSlots(batch, replicas, key_prefix, me, lease_s=LEASE_S),
            breakers=SharedBreakers(link, breakers, key_prefix, replica_id=me),
            stats=SharedStats(link, stats, key_prefix, replica_id=me))

    def start(self) -> None:
        """Start the background work: heartbeat, breaker polling, stats exchange."""
        self.slots.start()
        self.breakers.start()
        self.stats.start()

    async def aclose(self) -> None:
        """Stop the background work and give back this replica's concurrency slots."""
        await self.stats.aclose()
        await self.breakers.aclose()
        await self.slots.aclose()
