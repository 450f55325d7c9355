"""Tenant spend in Redis, shared by every replica.

One hash per tenant and period (`<prefix>spend:<tenant>:<period>`): field `total` holds the
USD spent, and one field per provider model and measure holds that line (`c`ost,
`p`rompt tokens, `o`utput tokens, `n` requests; the field name is the measure, a NUL, the
provider, a NUL, the model, so no name can collide). A record is one MULTI/EXEC of
HINCRBYFLOAT/HINCRBY and EXPIRE on every period it falls in: atomic, and a replica that dies
mid-call cannot leave half a record. Keys expire a day after their period ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from provider_router.state.spend import PeriodKey, SpendEntry
from provider_router.tenants import SpendLine

_SEP = "\x00"
_MEASURES = ("c", "p", "o", "n")


def _field(measure: str, provider: str, model: str) -> str:
    return f"{measure}{_SEP}{provider}{_SEP}{model}"


class RedisSpendStore:
    """SpendStore over redis.asyncio; the client is owned by whoever passed it in, unless
    `owns_client` (then aclose closes it)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "provider-router:",
                 owns_client: bool = False) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, prefix: str = "provider-router:",
                 password: str | None = None) -> RedisSpendStore:
        """A store with its own connection pool to `url` (password from `[state] password_env`)."""
        # A blocking pool: a burst of calls waits for a connection instead of failing with
        # "Too many connections" (redis-py's plain pool raises at its limit).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, decode_responses=True, password=password)
        return cls(aioredis.Redis(connection_pool=pool), prefix, owns_client=True)

    def _key(self, tenant: str, period: str) -> str:
        return f"{self._prefix}spend:{tenant}:{period}"

    async def totals(self, tenant: str, periods: Sequence[str]) -> tuple[float, ...]:
        """The tenant's USD spent in each period (0.0 for one with no record)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for period in periods:
                pipe.hget(self._key(tenant, period), "total")
            values = await pipe.execute()
        return tuple(float(v) if v is not None else 0.0 for v in values)

    async def record(self, tenant: str, periods: Sequence[PeriodKey], entry: SpendEntry) -> None:
        """Add one call's spend to each period in one MULTI/EXEC."""
        async with self._client.pipeline(transaction=True) as pipe:
            for key in periods:
                name = self._key(tenant, key.period)
                pipe.hincrbyfloat(name, "total", entry.cost_usd)
                pipe.hincrbyfloat(name, _field("c", entry.provider, entry.model), entry.cost_usd)
                pipe.hincrby(name, _field("p", entry.provider, entry.model), entry.prompt_tokens)
                pipe.hincrby(name, _field("o", entry.provider, entry.model),
                             entry.completion_tokens)
                pipe.hincrby(name, _field("n", entry.provider, entry.model), 1)
                pipe.expire(name, max(1, int(key.ttl_s)))
            await pipe.execute()

    async def lines(self, tenant: str, period: str) -> tuple[SpendLine, ...]:
        """The tenant's spend per provider model in a period, sorted by provider and model."""
        raw: Mapping[Any, Any] = await self._client.hgetall(self._key(tenant, period))
        measures: dict[tuple[str, str], dict[str, Any]] = {}
        for name, value in raw.items():
            measure, sep, rest = name.partition(_SEP)
            provider, sep2, model = rest.partition(_SEP)
            if sep and sep2 and measure in _MEASURES:
                measures.setdefault((provider, model), {})[measure] = value
        return tuple(
            SpendLine(provider, model, float(m.get("c", 0.0)), int(m.get("p", 0)),
                      int(m.get("o", 0)), int(m.get("n", 0)))
            for (provider, model), m in sorted(measures.items()))

    async def aclose(self) -> None:
        """Close the connection pool when this store opened it."""
        if self._owns_client:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
