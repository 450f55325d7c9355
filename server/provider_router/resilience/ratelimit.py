"""Per-provider rate limits (token buckets) and concurrency limits.

Two buckets per provider, shaped by its spec: requests per minute (capacity `rate_limit_rpm`,
refilled at rpm/60 per second, one per call) and tokens per minute (capacity `rate_limit_tpm`,
refilled at tpm/60 per second, charged the call's estimated tokens and settled with the real
usage afterwards). 0 in the spec means unlimited and costs nothing.

The bucket math is pure functions (`refill`, `wait_for`) and the levels live behind
`BucketStore`. `take` and `credit` are async and atomic over all their charges, so a Redis
backend can run the same math in one Lua script, shared by every replica, without touching
callers; `peek` is sync because the planner's gate must be cheap (a shared backend answers
it from its last-known view). `MemoryBucketStore` is the in-process default.

Concurrency (`max_concurrent`) is per replica (`ConcurrencyLimits`, and the in-flight counts
of routing/stats.py); with shared state a `SharedSlots` also counts it over every replica.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from provider_router.domain import ProviderSpec

Clock = Callable[[], float]
"""Seconds on a monotonic clock; injected so tests never sleep."""


@dataclass(frozen=True, slots=True)
class Charge:
    """One bucket, its shape, and what this call costs it."""

    key: str
    capacity: float
    refill_per_s: float
    cost: float


def refill(level: float, stamp: float, capacity: float, rate: float, now: float) -> float:
    """A bucket's level at `now`, refilled since `stamp`, never above capacity."""
    return min(capacity, level + max(0.0, now - stamp) * rate)


def wait_for(level: float, cost: float, rate: float) -> float:
    """Seconds until a bucket at `level` holds `cost`; 0.0 when it already does."""
    return 0.0 if level >= cost else (cost - level) / rate


class BucketStore(Protocol):
    """Where bucket levels live; a new bucket starts full."""

    async def take(self, charges: Sequence[Charge], now: float) -> float:
        """Take every charge or none: 0.0 when taken, else seconds until all would fit."""
        ...

    def peek(self, charges: Sequence[Charge], now: float) -> float:
        """What `take` would answer, without taking."""
        ...

    async def credit(self, charge: Charge, now: float) -> None:
        """Add `charge.cost` back (negative: a debt), kept within [-capacity, capacity]."""
        ...

    async def forget(self, keys: Sequence[str]) -> None:
        """Drop buckets (their provider was unregistered)."""
        ...


class MemoryBucketStore:
    """Buckets in this process: one small lock and a dict of (level, stamp); O(1) per charge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, charge: Charge, now: float) -> tuple[float, float]:
        level, stamp = self._buckets.get(charge.key, (charge.capacity, now))
        # A caller with an older `now` must not rewind the stamp and earn the refill twice.
        latest = max(stamp, now)
        return refill(level, stamp, charge.capacity, charge.refill_per_s, latest), latest

    def _wait(self, charges: Sequence[Charge], now: float
              ) -> tuple[float, list[tuple[float, float]]]:
        levels = [self._level(charge, now) for charge in charges]
        wait = max((wait_for(level, c.cost, c.refill_per_s)
                    for c, (level, _) in zip(charges, levels, strict=True)), default=0.0)
        return wait, levels

    def take_now(self, charges: Sequence[Charge], now: float) -> float:
        """`take` for synchronous callers (threads)."""
        with self._lock:
            wait, levels = self._wait(charges, now)
            if wait > 0.0:
                return wait
            for charge, (level, stamp) in zip(charges, levels, strict=True):
                self._buckets[charge.key] = (level - charge.cost, stamp)
            return 0.0

    async def take(self, charges: Sequence[Charge], now: float) -> float:
        """Take every charge or none: 0.0 when taken, else seconds until all would fit."""
        return self.take_now(charges, now)

    def peek(self, charges: Sequence[Charge], now: float) -> float:
        """What `take` would answer, without taking."""
        with self._lock:
            return self._wait(charges, now)[0]

    def credit_now(self, charge: Charge, now: float) -> None:
        """`credit` for synchronous callers (threads)."""
        with self._lock:
            level, stamp = self._level(charge, now)
            # A debt is bounded so one huge overrun cannot block a provider for many minutes.
            bounded = max(-charge.capacity, min(charge.capacity, level + charge.cost))
            self._buckets[charge.key] = (bounded, stamp)

    async def credit(self, charge: Charge, now: float) -> None:
        """Add `charge.cost` back (negative: a debt), kept within [-capacity, capacity]."""
        self.credit_now(charge, now)

    async def forget(self, keys: Sequence[str]) -> None:
        """Drop buckets (their provider was unregistered)."""
        with self._lock:
            for key in keys:
                self._buckets.pop(key, None)


def _rpm(spec: ProviderSpec, requests: float) -> Charge:
    rpm = float(spec.rate_limit_rpm)
    return Charge(f"{spec.name}/rpm", rpm, rpm / 60.0, requests)


def _tpm(spec: ProviderSpec, tokens: float) -> Charge:
    tpm = float(spec.rate_limit_tpm)
    # A call larger than the whole bucket waits for a full bucket instead of forever.
    return Charge(f"{spec.name}/tpm", tpm, tpm / 60.0, min(tokens, tpm))


def _charges(spec: ProviderSpec, requests: float, tokens: float) -> tuple[Charge, ...]:
    charges: list[Charge] = []
    if spec.rate_limit_rpm > 0:
        charges.append(_rpm(spec, requests))
    if spec.rate_limit_tpm > 0:
        charges.append(_tpm(spec, tokens))
    return tuple(charges)


class RateLimiter:
    """Requests- and tokens-per-minute buckets per provider, shaped by its current spec."""

    def __init__(self, store: BucketStore | None = None, clock: Clock = time.monotonic
                 ) -> None:
        self._store: BucketStore = store or MemoryBucketStore()
        self._clock = clock

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    async def try_acquire(self, spec: ProviderSpec, tokens: int = 0,
                          now: float | None = None) -> float:
        """Take one request and `tokens` (an estimate): 0.0 when admitted, else seconds to wait."""
        charges = _charges(spec, 1.0, float(tokens))
        if not charges:
            return 0.0
        return await self._store.take(charges, self._now(now))

    def wait_s(self, spec: ProviderSpec, tokens: int = 0, now: float | None = None) -> float:
        """Seconds until `try_acquire` would admit this call; 0.0 when it would now."""
        charges = _charges(spec, 1.0, float(tokens))
        if not charges:
            return 0.0
        return self._store.peek(charges, self._now(now))

    def has_headroom(self, spec: ProviderSpec, tokens: int = 0,
                     now: float | None = None) -> bool:
        """Cheap planner gate: whether a call of `tokens` would be admitted now."""
        return self.wait_s(spec, tokens, now) <= 0.0

    async def adjust(self, spec: ProviderSpec, reserved_tokens: int, actual_tokens: int,
                     now: float | None = None) -> None:
        """Settle the token bucket with real usage: refund the excess or record the debt."""
        if spec.rate_limit_tpm <= 0 or reserved_tokens == actual_tokens:
            return
        await self._store.credit(_tpm(spec, float(reserved_tokens - actual_tokens)),
                                 self._now(now))

    async def refund(self, spec: ProviderSpec, tokens: int, now: float | None = None) -> None:
        """Give back a request and its tokens: the call never reached the provider."""
        for charge in _charges(spec, 1.0, float(tokens)):
            await self._store.credit(charge, self._now(now))

    async def forget(self, provider: str) -> None:
        """Drop a provider's buckets (it was unregistered)."""
        await self._store.forget((f"{provider}/rpm", f"{provider}/tpm"))


class SharedSlots(Protocol):
    """Concurrency slots counted over every replica (`max_concurrent` as a global limit);
    state/redis_concurrency.py implements it on Redis."""

    def enter(self, provider: str, limit: int) -> Awaitable[bool]:
        """Take a slot unless `limit` are taken across all replicas. The request is queued
        at once (so it can share a round trip with a rate-limit take); await the answer."""
        ...

    def leave(self, provider: str) -> None:
        """Give back a slot taken by `enter` (never waits)."""
        ...


class ConcurrencyLimits:
    """Calls in flight per provider, with an atomic check-and-enter against `max_concurrent`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def try_enter(self, provider: str, max_concurrent: int) -> bool:
        """Take a slot unless `max_concurrent` (> 0) are taken; 0 means unlimited."""
        with self._lock:
            current = self._in_flight.get(provider, 0)
            if 0 < max_concurrent <= current:
                return False
            self._in_flight[provider] = current + 1
            return True

    def leave(self, provider: str) -> None:
        """Give back a slot taken by `try_enter`."""
        with self._lock:
            current = self._in_flight.get(provider, 0)
            if current <= 0:
                raise RuntimeError(f"leave({provider!r}) without a matching try_enter")
            if current == 1:
                del self._in_flight[provider]
            else:
                self._in_flight[provider] = current - 1

    @contextmanager
    def slot(self, provider: str, max_concurrent: int) -> Iterator[bool]:
        """`try_enter` for a block: yields whether a slot was taken, and gives it back."""
        entered = self.try_enter(provider, max_concurrent)
        try:
            yield entered
        finally:
            if entered:
                self.leave(provider)

    def in_flight(self, provider: str) -> int:
        """Calls in flight on this replica."""
        return self._in_flight.get(provider, 0)

    def has_capacity(self, provider: str, max_concurrent: int) -> bool:
        """Cheap planner gate: whether `try_enter` would succeed now."""
        return max_concurrent <= 0 or self.in_flight(provider) < max_concurrent
