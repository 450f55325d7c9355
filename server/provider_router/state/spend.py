"""Spend per tenant, provider and model in each period: the SpendStore protocol and the
in-process store.

A period is a key such as `day:2026-12-04` or `month:2026-12` (tenants.periods_at); each
record adds a call's cost and tokens to every period it falls in, and entries expire once
their period is over (plus a day, so a usage report at midnight still sees yesterday). The
in-process store counts this replica's calls only; state/redis_spend.py shares the totals
across replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from provider_router.tenants import SpendLine


@dataclass(frozen=True, slots=True)
class SpendEntry:
    """One call's spend, to add to periods."""

    provider: str
    model: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class PeriodKey:
    """A period to record into, and seconds until its entry may be dropped."""

    period: str
    ttl_s: float


class SpendStore(Protocol):
    """Where tenant spend lives."""

    async def totals(self, tenant: str, periods: Sequence[str]) -> tuple[float, ...]:
        """The tenant's USD spent in each period (0.0 for one with no record)."""
        ...

    async def record(self, tenant: str, periods: Sequence[PeriodKey], entry: SpendEntry) -> None:
        """Add one call's spend to each period, atomically across them."""
        ...

    async def lines(self, tenant: str, period: str) -> tuple[SpendLine, ...]:
        """The tenant's spend per provider model in a period, sorted by provider and model."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(slots=True)
class _Period:
    expires_at: float
    total: float = 0.0
    lines: dict[tuple[str, str], list[float]] | None = None


class MemorySpendStore:
    """Spend in this process (per replica): a dict of periods behind one lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._periods: dict[tuple[str, str], _Period] = {}

    def _live(self, tenant: str, period: str, now: float) -> _Period | None:
        found = self._periods.get((tenant, period))
        if found is not None and found.expires_at <= now:
            del self._periods[(tenant, period)]
            return None
        return found

    async def totals(self, tenant: str, periods: Sequence[str]) -> tuple[float, ...]:
        """The tenant's USD spent in each period (0.0 for one with no record)."""
        now = self._clock()
        with self._lock:
            found = [self._live(tenant, period, now) for period in periods]
        return tuple(p.total if p is not None else 0.0 for p in found)

    def _sweep(self, now: float) -> None:
        for key in [k for k, p in self._periods.items() if p.expires_at <= now]:
            del self._periods[key]

    async def record(self, tenant: str, periods: Sequence[PeriodKey], entry: SpendEntry) -> None:
        """Add one call's spend to each period, atomically across them."""
        now = self._clock()
        with self._lock:
            for key in periods:
                slot = self._live(tenant, key.period, now)
                if slot is None:
                    self._sweep(now)  # a new period began: drop the ones that are over
                    slot = self._periods[(tenant, key.period)] = _Period(now + key.ttl_s)
                slot.total += entry.cost_usd
                lines = slot.lines if slot.lines is not None else {}
                slot.lines = lines
                line = lines.setdefault((entry.provider, entry.model), [0.0, 0, 0, 0])
                line[0] += entry.cost_usd
                line[1] += entry.prompt_tokens
                line[2] += entry.completion_tokens
                line[3] += 1

    async def lines(self, tenant: str, period: str) -> tuple[SpendLine, ...]:
        """The tenant's spend per provider model in a period, sorted by provider and model."""
        with self._lock:
            slot = self._live(tenant, period, self._clock())
            items = sorted((slot.lines or {}).items()) if slot is not None else []
        return tuple(SpendLine(provider, model, cost, int(prompt), int(completion), int(n))
                     for (provider, model), (cost, prompt, completion, n) in items)

    async def aclose(self) -> None:
        """Nothing to release."""
