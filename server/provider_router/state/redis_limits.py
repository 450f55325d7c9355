"""Global rate limits on Redis: GCRA in one atomic Lua script per admission.

Algorithm: GCRA (the generic cell rate algorithm), the token bucket of
resilience/ratelimit.py stored as one number per bucket, its *theoretical arrival time*
(TAT). A bucket of capacity C refilled at r per second has emission interval T = 1/r and
burst tolerance tau = C*T; its level at time `now` is (now + tau - TAT) / T. Taking `cost`
moves TAT to max(TAT, now) + cost*T and is allowed when that stays within now + tau; a
credit moves it back (a debt forward), kept so the level stays in [-C, C]. One key per
bucket, one script for every charge of a call (RPM and TPM together, all or nothing), and
the clock is Redis's own `TIME`, so replicas whose clocks disagree still share one timeline.
Keys expire once their bucket would be full again, so idle providers leave nothing behind.
The script is the `T` and `C` operations of redis_batch.py: the admissions of one event-loop
turn share one round trip, each still decided atomically.

The hot path never waits for Redis longer than the link's budget (`[state] timeout`, 5 ms
by default). A call Redis has not answered in time is refused if Redis refused these buckets
a moment ago (until the wait it gave), else admitted by a local bucket of limit / replicas
(`LocalShare`); a failure marks the link down and every call is admitted by the local share
until the link is back: no request fails because Redis did. `peek` (the planner's gate) is
answered from the last denial Redis gave, or from the local share while Redis is down.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.resilience.ratelimit import Charge, MemoryBucketStore
from provider_router.state.redis_batch import AdmissionBatch, key_ref
from provider_router.state.redis_link import FAILURES


class LocalShare:
    """This replica's share of every limit (limit / replicas), used while Redis is down."""

    def __init__(self, replicas: int) -> None:
        self._replicas = max(1, replicas)
        self.store = MemoryBucketStore()

    def scaled(self, charge: Charge) -> Charge:
        """`charge` against a bucket 1/replicas the size, refilled 1/replicas as fast."""
        n = self._replicas
        if n == 1:
            return charge
        capacity = charge.capacity / n
        cost = min(charge.cost, capacity) if charge.cost > 0 else charge.cost
        return Charge(charge.key, capacity, charge.refill_per_s / n, cost)

    def take(self, charges: Sequence[Charge], now: float) -> float:
        """Take from the local share."""
        return self.store.take_now([self.scaled(c) for c in charges], now)

    def peek(self, charges: Sequence[Charge], now: float) -> float:
        """Peek at the local share."""
        return self.store.peek([self.scaled(c) for c in charges], now)


def _shape(charge: Charge) -> tuple[float, float]:
    """(emission interval T, burst tolerance tau) of a bucket."""
    interval = 1.0 / charge.refill_per_s
    return interval, charge.capacity * interval


class RedisBucketStore:
    """The `BucketStore` of every replica sharing one Redis: global RPM/TPM buckets."""

    def __init__(self, batch: AdmissionBatch, replicas: int, key_prefix: str) -> None:
        self._batch = batch
        self._link = batch.link
        self._prefix = f"{key_prefix}rl:"
        self.local = LocalShare(replicas)
        # keys -> local monotonic time before which Redis said the call would not fit.
        self._denied_until: dict[tuple[str, ...], float] = {}
        self.decided_locally = 0
        """Admissions Redis did not answer within the budget (decided here instead)."""

    async def take(self, charges: Sequence[Charge], now: float) -> float:
        """Take every charge or none, globally: 0.0 when taken, else seconds to wait."""
        if not self._link.up:
            return self.local.take(charges, now)
        words: list[str | float | int] = ["T", len(charges)]
        for n, charge in enumerate(charges):
            words += [key_ref(n), *_shape(charge), charge.cost]
        answer = await self._batch.submit(words, [self._prefix + c.key for c in charges])
        keys = tuple(c.key for c in charges)
        if answer is None:
            return self._decide_locally(keys, charges, now)
        wait = float(answer)
        if wait > 0.0:
            self._denied_until[keys] = now + wait
        return wait

    def _decide_locally(self, keys: tuple[str, ...], charges: Sequence[Charge],
                        now: float) -> float:
        """Redis did not answer in time. If it said a moment ago that the bucket is empty,
        that still holds (admitting here as well would add the local share to the global
        limit under overload); else this replica's share decides."""
        self.decided_locally += 1
        until = self._denied_until.get(keys)
        if until is not None and until > now:
            return until - now
        return self.local.take(charges, now)

    def peek(self, charges: Sequence[Charge], now: float) -> float:
        """What `take` would answer, from the last denial Redis gave (or the local share)."""
        if not self._link.up:
            return self.local.peek(charges, now)
        until = self._denied_until.get(tuple(c.key for c in charges))
        return 0.0 if until is None else max(0.0, until - now)

    async def credit(self, charge: Charge, now: float) -> None:
        """Give back `charge.cost` (negative: a debt) on the global bucket."""
        if self._link.up:
            answer = await self._batch.submit(["C", key_ref(0), *_shape(charge), charge.cost],
                                              [self._prefix + charge.key])
            if answer is not None:
                return
        self.local.store.credit_now(self.local.scaled(charge), now)

    async def forget(self, keys: Sequence[str]) -> None:
        """Drop buckets (their provider was unregistered) here and, when reachable, in Redis."""
        await self.local.store.forget(keys)
        self._denied_until = {k: v for k, v in self._denied_until.items()
                              if not set(k) & set(keys)}
        if not self._link.up:
            return
        try:
            await self._link.client.delete(*(self._prefix + key for key in keys))
        except FAILURES as error:
            self._link.failed(error)
