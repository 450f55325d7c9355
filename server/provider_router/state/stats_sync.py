"""Latency and error statistics merged across replicas, batched once a second.

Requests never touch Redis for statistics. Every `interval_s` (1 s) each replica runs one
Lua script that writes a small summary per provider (EMA latency and TTFT, p50/p95/p99,
samples, outcomes and failures in its window, calls in flight: `StatsSummary`) into the hash
`<prefix>stats` under "replica<US>provider", stamped with Redis time, drops fields no replica
has refreshed for `expire_s`, and returns the whole hash. The replica merges the fresh
summaries of the others (sample-weighted, `merge_summaries`) and hands them to its StatsBook,
whose readers blend them with their own figures: latency routing and least-loaded see what
every replica measured, at most a couple of seconds old.

While Redis is down the last merged figures stay (the last known state); a replica that
stopped reporting drops out after `fresh_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from provider_router.routing.stats import StatsBook, StatsSummary, merge_summaries
from provider_router.state.redis_link import FAILURES, RedisLink

_SEP = "\x1f"

# KEYS[1]: the hash. ARGV[1]: seconds after which a field is dropped; then field, value pairs.
_EXCHANGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.3f', now)
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], stamp .. '|' .. ARGV[i + 1])
end
local all = redis.call('HGETALL', KEYS[1])
local kept = {}
for i = 1, #all, 2 do
  local at = tonumber(string.match(all[i + 1], '^([^|]+)'))
  if now - at > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    kept[#kept + 1] = all[i]
    kept[#kept + 1] = all[i + 1]
  end
end
return {stamp, kept}
"""


def encode(summary: StatsSummary) -> str:
    """A summary as text: numbers joined by "|", "" for unknown averages."""
    s = summary
    return "|".join(("" if s.ema_ms is None else f"{s.ema_ms:.3f}",
                     "" if s.ttft_ms is None else f"{s.ttft_ms:.3f}",
                     f"{s.p50_ms:.3f}", f"{s.p95_ms:.3f}", f"{s.p99_ms:.3f}",
                     str(s.samples), str(s.outcomes), str(s.failures), str(s.in_flight)))


def decode(text: str) -> StatsSummary:
    """The inverse of `encode`."""
    ema, ttft, p50, p95, p99, samples, outcomes, failures, in_flight = text.split("|")
    return StatsSummary(float(ema) if ema else None, float(ttft) if ttft else None,
                        float(p50), float(p95), float(p99), int(samples), int(outcomes),
                        int(failures), int(in_flight))


class SharedStats:
    """Publishes this replica's statistics and merges the others' into its StatsBook."""

    def __init__(self, link: RedisLink, stats: StatsBook, key_prefix: str, *,
                 interval_s: float = 1.0, fresh_s: float = 3.0, expire_s: float = 30.0,
                 replica_id: str | None = None) -> None:
        self._link = link
        self._stats = stats
        self._hash = f"{key_prefix}stats"
        self._interval_s = interval_s
        self._fresh_s = fresh_s
        self._expire_s = expire_s
        self._me = replica_id or uuid.uuid4().hex
        self._exchange = link.client.register_script(_EXCHANGE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the once-a-second exchange (inside the event loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._link.every(self._interval_s, self.exchange))

    async def aclose(self) -> None:
        """Stop exchanging; the merged figures stay as they were."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def exchange(self) -> None:
        """Write our summaries, read everyone's, and merge the other replicas' in."""
        args: list[str] = [f"{self._expire_s:.3f}"]
        for provider, summary in self._stats.summaries().items():
            args += [f"{self._me}{_SEP}{provider}", encode(summary)]
        try:
            stamp, flat = await self._exchange(keys=[self._hash], args=args)
        except FAILURES as error:
            self._link.failed(error)
            return
        self._stats.set_peers(self._merge(float(stamp), flat))

    def _merge(self, now: float, flat: list[bytes]) -> dict[str, StatsSummary]:
        per_provider: defaultdict[str, list[StatsSummary]] = defaultdict(list)
        for raw_field, raw_value in zip(flat[::2], flat[1::2], strict=True):
            replica, _, provider = raw_field.decode().partition(_SEP)
            at, _, text = raw_value.decode().partition("|")
            if replica != self._me and now - float(at) <= self._fresh_s:
                per_provider[provider].append(decode(text))
        return {name: merge_summaries(found) for name, found in per_provider.items()}
