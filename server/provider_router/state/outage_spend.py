"""Tenant spend that survives a Redis outage: no call fails because the spend store failed.

`OutageTolerantSpendStore` sits in front of the Redis SpendStore. Each read or write gets
`timeout_s`; a failure or a timeout marks the link down (logged once per outage, by the
link) and the call goes on:
- budget checks read the last totals Redis gave for that tenant and period, plus what this
  replica spent since (so a replica still stops a tenant at its budget, on what it knows);
- spend is kept locally and added to Redis when a later write succeeds, so an outage loses
  no spend and the global totals are right again once Redis is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from provider_router.state.redis_link import FAILURES, RedisLink
from provider_router.state.spend import PeriodKey, SpendEntry, SpendStore
from provider_router.tenants import SpendLine

WRITE_TIMEOUT_S = 0.25
"""The least time a spend write gets before it is kept for later."""


@dataclass(slots=True)
class _Unsent:
    """Spend recorded while Redis could not take it, in the order it happened."""

    records: list[tuple[str, tuple[PeriodKey, ...], SpendEntry]] = field(default_factory=list)

    def add(self, tenant: str, periods: Sequence[PeriodKey], entry: SpendEntry) -> None:
        self.records.append((tenant, tuple(periods), entry))

    def total(self, tenant: str, period: str) -> float:
        return sum(entry.cost_usd for name, keys, entry in self.records
                   if name == tenant and any(key.period == period for key in keys))


class OutageTolerantSpendStore:
    """A SpendStore over `remote` (Redis) that falls back to local knowledge while it fails."""

    def __init__(self, remote: SpendStore, link: RedisLink | None, timeout_s: float) -> None:
        self._remote = remote
        self._link = link
        self._timeout_s = timeout_s
        self._known: dict[tuple[str, str], float] = {}
        self._unsent = _Unsent()
        # One flush at a time: two would send the same record twice.
        self._flushing = asyncio.Lock()
        if link is not None:
            link.add_reconnect_listener(self.flush)

    def _failed(self, error: BaseException) -> None:
        if self._link is not None:
            self._link.failed(error)

    async def totals(self, tenant: str, periods: Sequence[str]) -> tuple[float, ...]:
        """Redis's totals; while it fails, the last ones it gave plus local unsent spend."""
        try:
            found = await asyncio.wait_for(self._remote.totals(tenant, periods), self._timeout_s)
        except FAILURES as error:
            self._failed(error)
        else:
            for period, total in zip(periods, found, strict=True):
                self._known[(tenant, period)] = total
            return tuple(total + self._unsent.total(tenant, period)
                         for period, total in zip(periods, found, strict=True))
        return tuple(self._known.get((tenant, period), 0.0) + self._unsent.total(tenant, period)
                     for period in periods)

    async def record(self, tenant: str, periods: Sequence[PeriodKey], entry: SpendEntry) -> None:
        """Add to Redis (first any spend it missed); keep it locally when Redis fails."""
        self._unsent.add(tenant, periods, entry)
        await self.flush()

    async def flush(self) -> None:
        """Send unsent spend to Redis in order; stop at the first failure (kept for later)."""
        async with self._flushing:
            while self._unsent.records:
                tenant, periods, entry = self._unsent.records[0]
                try:
                    # A write cut short by a timeout may still have been applied, and would
                    # then count twice: writes get a longer budget than reads.
                    await asyncio.wait_for(self._remote.record(tenant, periods, entry),
                                           max(self._timeout_s, WRITE_TIMEOUT_S))
                except FAILURES as error:
                    self._failed(error)
                    return
                self._unsent.records.pop(0)

    async def lines(self, tenant: str, period: str) -> tuple[SpendLine, ...]:
        """Redis's per-model lines (an admin read: it fails with Redis, as a report should)."""
        return await self._remote.lines(tenant, period)

    async def aclose(self) -> None:
        """Close the remote store."""
        await self._remote.aclose()
