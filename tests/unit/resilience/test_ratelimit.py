"""Token buckets (requests and tokens per minute) and concurrency limits, on a fake clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from provider_router.domain import ProviderKind, ProviderSpec
from provider_router.resilience.ratelimit import (
    Charge,
    ConcurrencyLimits,
    MemoryBucketStore,
    RateLimiter,
    refill,
    wait_for,
)
from tests.unit.resilience.conftest import FakeClock


def spec(rpm: int = 0, tpm: int = 0, name: str = "p") -> ProviderSpec:
    return ProviderSpec(name=name, kind=ProviderKind.MOCK, rate_limit_rpm=rpm, rate_limit_tpm=tpm)


# --- the pure math ------------------------------------------------------------------------------


def test_refill_and_wait_math() -> None:
    assert refill(0.0, 10.0, 60.0, 1.0, 40.0) == 30.0
    assert refill(50.0, 10.0, 60.0, 1.0, 100.0) == 60.0  # never above capacity
    assert refill(5.0, 10.0, 60.0, 1.0, 9.0) == 5.0      # a clock going back adds nothing
    assert wait_for(3.0, 2.0, 1.0) == 0.0
    assert wait_for(-2.0, 3.0, 0.5) == 10.0


# --- requests per minute ------------------------------------------------------------------------


async def test_rpm_admits_a_full_bucket_then_refills_one_per_second(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=60)
    assert [await limiter.try_acquire(p) for _ in range(60)] == [0.0] * 60
    assert await limiter.try_acquire(p) == pytest.approx(1.0)
    assert not limiter.has_headroom(p)
    clock.advance(0.5)
    assert await limiter.try_acquire(p) == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.has_headroom(p)
    assert await limiter.try_acquire(p) == 0.0
    assert await limiter.try_acquire(p) == pytest.approx(1.0)


async def test_a_long_idle_refills_only_to_capacity(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=6)
    for _ in range(6):
        await limiter.try_acquire(p)
    clock.advance(3600.0)
    assert [await limiter.try_acquire(p) for _ in range(6)] == [0.0] * 6
    assert await limiter.try_acquire(p) == pytest.approx(10.0)


async def test_an_explicit_now_overrides_the_clock(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=1)
    assert await limiter.try_acquire(p, now=0.0) == 0.0
    assert await limiter.try_acquire(p, now=30.0) == pytest.approx(30.0)
    assert await limiter.try_acquire(p, now=60.0) == 0.0


# --- tokens per minute --------------------------------------------------------------------------


async def test_tpm_charges_tokens_and_says_how_long_to_wait(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(tpm=600)  # 10 tokens per second
    assert await limiter.try_acquire(p, tokens=500) == 0.0
    assert limiter.wait_s(p, tokens=200) == pytest.approx(10.0)
    assert await limiter.try_acquire(p, tokens=200) == pytest.approx(10.0)
    clock.advance(10.0)
    assert await limiter.try_acquire(p, tokens=200) == 0.0


async def test_a_call_bigger_than_the_bucket_waits_for_a_full_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(tpm=600)
    await limiter.try_acquire(p, tokens=300)
    assert await limiter.try_acquire(p, tokens=10_000) == pytest.approx(30.0)
    clock.advance(30.0)
    assert await limiter.try_acquire(p, tokens=10_000) == 0.0


async def test_both_buckets_or_neither(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=2, tpm=100)
    assert await limiter.try_acquire(p, tokens=90) == 0.0
    assert await limiter.try_acquire(p, tokens=50) > 0.0  # tokens short: no request taken either
    assert await limiter.try_acquire(p, tokens=10) == 0.0  # the second request is still there
    assert await limiter.try_acquire(p, tokens=0) == pytest.approx(30.0)  # now requests are out


async def test_adjust_refunds_an_overestimate_and_records_a_debt(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(tpm=600)
    await limiter.try_acquire(p, tokens=600)
    await limiter.adjust(p, reserved_tokens=600, actual_tokens=100)
    assert limiter.wait_s(p, tokens=500) == 0.0
    assert await limiter.try_acquire(p, tokens=500) == 0.0
    await limiter.adjust(p, reserved_tokens=500, actual_tokens=900)  # 400 more than reserved
    assert limiter.wait_s(p, tokens=0) == pytest.approx(40.0)


async def test_a_debt_is_bounded_by_the_capacity(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(tpm=600)
    await limiter.try_acquire(p, tokens=600)
    await limiter.adjust(p, reserved_tokens=0, actual_tokens=1_000_000)
    assert limiter.wait_s(p, tokens=0) == pytest.approx(60.0)


async def test_refund_gives_back_the_request_and_its_tokens(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=1, tpm=100)
    await limiter.try_acquire(p, tokens=100)
    assert not limiter.has_headroom(p)
    await limiter.refund(p, tokens=100)
    assert limiter.has_headroom(p, tokens=100)


async def test_unlimited_specs_cost_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec()
    assert await limiter.try_acquire(p, tokens=10**9) == 0.0
    assert limiter.has_headroom(p, tokens=10**9)
    await limiter.adjust(p, 1, 10**9)
    await limiter.refund(p, 10)


async def test_has_headroom_does_not_take(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    p = spec(rpm=1)
    for _ in range(5):
        assert limiter.has_headroom(p)
    assert await limiter.try_acquire(p) == 0.0


async def test_providers_are_independent_and_forget_resets(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    a, b = spec(rpm=1, name="a"), spec(rpm=1, name="b")
    await limiter.try_acquire(a)
    assert limiter.has_headroom(b)
    await limiter.forget("a")
    assert limiter.has_headroom(a)


async def test_a_shrunk_limit_applies_at_once(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    await limiter.try_acquire(spec(rpm=100))
    assert await limiter.try_acquire(spec(rpm=1)) == 0.0  # 99 left, clamped to 1, taken
    assert await limiter.try_acquire(spec(rpm=1)) == pytest.approx(60.0)


def test_the_memory_store_is_exact_under_threads() -> None:
    store = MemoryBucketStore()
    charge = (Charge("p/rpm", capacity=250.0, refill_per_s=0.0001, cost=1.0),)
    admitted = 0
    lock = threading.Lock()

    def hammer() -> None:
        nonlocal admitted
        for _ in range(100):
            if store.take_now(charge, now=0.0) == 0.0:
                with lock:
                    admitted += 1

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted == 250


# --- concurrency --------------------------------------------------------------------------------


async def test_concurrency_never_exceeds_max_under_many_tasks() -> None:
    limits = ConcurrencyLimits()
    current = peak = done = 0

    async def call() -> None:
        nonlocal current, peak, done
        for _ in range(10_000):
            if limits.try_enter("p", 5):
                break
            await asyncio.sleep(0)
        else:
            pytest.fail("never got a slot")
        try:
            current += 1
            peak = max(peak, current)
            for _ in range(3):
                await asyncio.sleep(0)
            current -= 1
        finally:
            limits.leave("p")
        done += 1

    await asyncio.gather(*(call() for _ in range(200)))
    assert (peak, done, limits.in_flight("p")) == (5, 200, 0)


def test_concurrency_is_exact_under_threads() -> None:
    limits = ConcurrencyLimits()
    entered = 0
    lock = threading.Lock()

    def grab() -> None:
        nonlocal entered
        for _ in range(100):
            if limits.try_enter("p", 37):
                with lock:
                    entered += 1

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert entered == limits.in_flight("p") == 37
    assert not limits.has_capacity("p", 37)


def test_slot_gives_back_and_zero_means_unlimited() -> None:
    limits = ConcurrencyLimits()
    with limits.slot("p", 1) as first, limits.slot("p", 1) as second:
        assert (first, second) == (True, False)
        assert limits.in_flight("p") == 1
    assert limits.in_flight("p") == 0
    assert all(limits.try_enter("q", 0) for _ in range(1000))
    assert limits.has_capacity("q", 0)


def test_leave_without_enter_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        ConcurrencyLimits().leave("p")
