"""Global `max_concurrent` on Redis: slots counted per replica, with leases that expire.

Each provider has a hash `<prefix>cc:<provider>`, one field per replica holding how many
calls that replica has in flight; `<prefix>cc-alive` (a sorted set) holds when each replica
last showed a sign of life (Redis time). Taking a slot is one Lua script: sum the fields of
live replicas (dropping replicas silent for `lease_s`, so a crashed replica does not keep its
slots), refuse at the limit, else add one to our own field. Giving a slot back never waits:
`leave` lowers the local count and a background flush writes our field's absolute value
(absolute, not a decrement: a script that timed out after counting, or a lost write, is
corrected by the next flush). A heartbeat every `heartbeat_s` refreshes liveness and every
field.

The hot path never waits longer than the link's budget; when Redis is down or slow a call is
admitted against this replica's share, ceil(limit / replicas), of its own in-flight calls.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter

import redis.asyncio as redis

from provider_router.state.redis_link import RedisLink

# KEYS[1]: the provider's hash, KEYS[2]: the liveness set. ARGV: me, limit, lease seconds.
_ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[2], now, ARGV[1])
local lease = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #all, 2 do
  local count = tonumber(all[i + 1])
  if all[i] ~= ARGV[1] then
    local seen = redis.call('ZSCORE', KEYS[2], all[i])
    if (not seen) or now - tonumber(seen) > lease then
      redis.call('HDEL', KEYS[1], all[i])
      count = 0
    end
  end
  total = total + count
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""

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

_FAILURES = (redis.RedisError, OSError, TimeoutError)


class RedisSlots:
    """`SharedSlots` on Redis: max_concurrent counted over every live replica."""

    def __init__(self, link: RedisLink, replicas: int, timeout_s: float, key_prefix: str, *,
                 lease_s: float = 5.0, heartbeat_s: float = 1.0,
                 replica_id: str | None = None) -> None:
        self._link = link
        self._replicas = max(1, replicas)
        self._timeout_s = timeout_s
        self._prefix = f"{key_prefix}cc:"
        self._alive = f"{key_prefix}cc-alive"
        self._lease = f"{lease_s:.3f}"
        self._heartbeat_s = heartbeat_s
        self._me = replica_id or uuid.uuid4().hex
        self._enter = link.client.register_script(_ENTER)
        self._beat = link.client.register_script(_HEARTBEAT)
        self._held: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    def held(self, provider: str) -> int:
        """Slots this replica holds for `provider`."""
        return self._held[provider]

    async def enter(self, provider: str, limit: int) -> bool:
        """Take a slot unless `limit` are taken across all replicas (or, with Redis down or
        slow, unless this replica holds its share)."""
        link = self._link
        if link.up:
            try:
                async with asyncio.timeout(self._timeout_s):
                    taken = await self._enter(keys=[self._prefix + provider, self._alive],
                                              args=[self._me, limit, self._lease])
            except _FAILURES as error:
                link.failed(error)
                self._dirty.add(provider)  # the script may have counted: the flush corrects
            else:
                if not taken:
                    return False
                self._held[provider] += 1
                return True
        if self._held[provider] >= math.ceil(limit / self._replicas):
            return False
        self._held[provider] += 1
        return True

    def leave(self, provider: str) -> None:
        """Give back a slot; Redis hears of it in a moment (one flush for many leaves)."""
        if self._held[provider] > 0:
            self._held[provider] -= 1
        self._dirty.add(provider)
        if self._flush_task is None and self._link.up:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._dirty and self._link.up:
                await asyncio.sleep(0)  # let the leaves of this turn of the loop gather
                dirty, self._dirty = self._dirty, set()
                await self._write(sorted(dirty))
        finally:
            self._flush_task = None

    async def _write(self, providers: list[str]) -> None:
        try:
            await self._beat(keys=[self._alive, *(self._prefix + p for p in providers)],
                             args=[self._me, self._lease,
                                   *(self._held[p] for p in providers)])
        except _FAILURES as error:
            self._link.failed(error)

    async def heartbeat(self) -> None:
        """Mark this replica alive and write every count it holds (also the resync)."""
        providers = sorted(set(self._held) | self._dirty)
        self._dirty = set()
        await self._write(providers)
        self._held = Counter({p: n for p, n in self._held.items() if n > 0})

    def start(self) -> None:
        """Start the heartbeat and resync on reconnect (inside the event loop)."""
        self._link.add_reconnect_listener(self.heartbeat)
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if self._link.up:
                await self.heartbeat()

    async def aclose(self) -> None:
        """Stop the heartbeat and give back this replica's slots in Redis."""
        tasks = [t for t in (self._heartbeat_task, self._flush_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._link.up:
            providers = sorted(self._held)
            self._held = Counter({p: 0 for p in providers})
            await self._write(providers)
