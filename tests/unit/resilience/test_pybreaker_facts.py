"""Facts about pybreaker 1.4.1 that resilience/breaker.py works around, pinned so an upgrade
that changes them is noticed (the wrapper's own tests prove each one is handled)."""

from __future__ import annotations

import asyncio
import importlib.util
from contextlib import ExitStack

import pybreaker
import pytest


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom


def test_call_returns_the_coroutine_unawaited_and_counts_nothing() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1)
    coroutine = breaker.call(boom)
    assert asyncio.iscoroutine(coroutine)
    with pytest.raises(Boom):
        asyncio.run(coroutine)
    assert breaker.fail_counter == 0
    assert breaker.current_state == pybreaker.STATE_CLOSED


def test_decorator_on_a_coroutine_function_counts_nothing() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1)
    guarded = breaker(boom)
    with pytest.raises(Boom):
        asyncio.run(guarded())
    assert breaker.fail_counter == 0


@pytest.mark.skipif(importlib.util.find_spec("tornado") is not None, reason="tornado installed")
def test_call_async_needs_tornado() -> None:
    breaker = pybreaker.CircuitBreaker()
    with pytest.raises(ImportError):
        breaker(**{"__pybreaker_call_async": True})


async def test_calling_counts_an_awaited_failure_and_a_success_resets() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=3)
    with pytest.raises(Boom), breaker.calling():
        await boom()
    assert breaker.fail_counter == 1
    with breaker.calling():
        await asyncio.sleep(0)
    assert breaker.fail_counter == 0


def test_the_tripping_failure_is_replaced_by_circuit_breaker_error_by_default() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1)
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        raise Boom


def test_half_open_admits_every_concurrent_call() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=0, throw_new_error_on_trip=False)
    with pytest.raises(Boom), breaker.calling():
        raise Boom
    assert breaker.current_state == pybreaker.STATE_OPEN
    with ExitStack() as calls:
        calls.enter_context(breaker.calling())
        calls.enter_context(breaker.calling())  # a second trial while the first is in flight
        assert breaker.current_state == pybreaker.STATE_HALF_OPEN
    assert breaker.current_state == pybreaker.STATE_CLOSED


def test_an_excluded_error_counts_as_success_and_resets_the_counter() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=5, exclude=[ValueError])
    for _ in range(2):
        with pytest.raises(Boom), breaker.calling():
            raise Boom
    assert breaker.fail_counter == 2
    with pytest.raises(ValueError), breaker.calling():
        raise ValueError
    assert breaker.fail_counter == 0


async def test_a_cancelled_call_counts_as_a_failure() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=5)

    async def slow() -> None:
        with breaker.calling():
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.fail_counter == 1
