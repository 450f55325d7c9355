"""Global `max_concurrent` on Redis: slots counted per replica, with leases that expire.

Each provider has a hash `<prefix>cc:<provider>`, one field per replica holding how many
calls that replica has in flight; `<prefix>cc-alive` (a sorted set) holds when each replica
last showed a sign of life (Redis time). Taking a slot (`E` in redis_batch.py's script) sums
the fields of live replicas, dropping replicas silent for `lease_s` so a crashed replica does
not keep its slots, refuses at the limit, else adds one to our own field. Giving a slot back
never waits: `leave` queues an `L` operation on the next batch. A heartbeat every
`heartbeat_s` marks the replica alive and writes every field's absolute value, which also
corrects a count that a timed-out batch changed without our knowing, or that Redis lost.

The hot path never waits longer than the link's budget; when Redis is down or slow a call is
admitted against this replica's share, ceil(limit / replicas), of its own in-flight calls.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable

from provider_router.state.redis_batch import AdmissionBatch, Answer, key_ref
from provider_router.state.redis_link import FAILURES

# KEYS[1]: the liveness set, then one hash per provider. ARGV: me, lease, then one count per
# hash. Marks us alive, forgets replicas long gone, and writes our absolute counts.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * tonumber(ARGV[2]))
for i = 2, #KEYS do
  if tonumber(ARGV[i + 1]) > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 1
"""


ALIVE_KEY = "cc-alive"
"""The liveness set's name after the key prefix."""


class RedisSlots:
    """`SharedSlots` on Redis: max_concurrent counted over every live replica."""

    def __init__(self, batch: AdmissionBatch, replicas: int, key_prefix: str,
                 replica_id: str, *, lease_s: float = 5.0, heartbeat_s: float = 1.0) -> None:
        self._batch = batch
        self._link = batch.link
        self._replicas = max(1, replicas)
        self._prefix = f"{key_prefix}cc:"
        self._alive = key_prefix + ALIVE_KEY
        self._lease = f"{lease_s:.3f}"
        self._heartbeat_s = heartbeat_s
        self._me = replica_id
        self._beat = self._link.client.register_script(_HEARTBEAT)
        self._held: Counter[str] = Counter()
        self._heartbeat_task: asyncio.Task[None] | None = None

    def held(self, provider: str) -> int:
        """Slots this replica holds for `provider`."""
        return self._held[provider]

    def enter(self, provider: str, limit: int) -> Awaitable[bool]:
        """Take a slot unless `limit` are taken across all replicas (or, with Redis down or
        slow, unless this replica holds its share). Queued at once, answered when awaited."""
        answer = None
        if self._link.up:
            answer = self._batch.submit(["E", key_ref(0), limit], [self._prefix + provider])
        return self._entered(provider, limit, answer)

    async def _entered(self, provider: str, limit: int,
                       pending: asyncio.Future[Answer] | None) -> bool:
        answer = None if pending is None else await pending
        if answer is not None:
            if not answer:
                return False
        elif self._held[provider] >= math.ceil(limit / self._replicas):
            return False
        self._held[provider] += 1
        return True

    def leave(self, provider: str) -> None:
        """Give back a slot; Redis hears of it with the next batch (never waited for)."""
        if self._held[provider] > 0:
            self._held[provider] -= 1
        if self._link.up:
            self._batch.submit(["L", key_ref(0), 1], [self._prefix + provider])

    async def heartbeat(self) -> None:
        """Mark this replica alive and write every count it holds (also the resync)."""
        providers = sorted(self._held)
        try:
            await self._beat(keys=[self._alive, *(self._prefix + p for p in providers)],
                             args=[self._me, self._lease, *(self._held[p] for p in providers)])
        except FAILURES as error:
            self._link.failed(error)
            return
        self._held = Counter({p: n for p, n in self._held.items() if n > 0})

    def start(self) -> None:
        """Start the heartbeat and resync on reconnect (inside the event loop)."""
        self._link.add_reconnect_listener(self.heartbeat)
        self._heartbeat_task = asyncio.get_running_loop().create_task(
            self._link.every(self._heartbeat_s, self.heartbeat))

    async def aclose(self) -> None:
        """Stop the heartbeat and give back this replica's slots in Redis."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._link.up:
            self._held = Counter({p: 0 for p in self._held})
            await self.heartbeat()
