"""Phase timeouts: resolution, which phase bounds a wait, cancellation stays cancellation."""

from __future__ import annotations

import asyncio

import pytest

from provider_router.connectors.timing import PhaseClock, PhaseTimeouts
from provider_router.domain import ProviderTimeouts
from provider_router.errors import ProviderTimeoutError
from provider_router.resilience.deadline import Deadline

TIMEOUTS = PhaseTimeouts(connect=1.0, first_token=0.2, idle=0.1, total=5.0)


def test_resolve_prefers_spec_then_server_default() -> None:
    resolved = PhaseTimeouts.resolve(ProviderTimeouts(first_token=2.0),
                                     ProviderTimeouts(connect=3.0, first_token=9.0, idle=4.0))
    assert resolved == PhaseTimeouts(connect=3.0, first_token=2.0, idle=4.0, total=300.0)


def test_budget_names_the_binding_phase() -> None:
    streaming = PhaseClock("p", TIMEOUTS, Deadline.after(10), streaming=True)
    assert streaming.budget()[1:] == ("first_token", 0.2)
    tight = PhaseClock("p", TIMEOUTS, Deadline.after(0.05), streaming=True)
    left, phase, limit = tight.budget()
    assert phase == "total" and limit <= 0.05 and left <= 0.05
    unary = PhaseClock("p", TIMEOUTS, Deadline.after(10), streaming=False)
    unary.saw_delta()  # a unary call never enters the idle phase
    assert unary.budget()[1:] == ("total", 5.0)


async def test_phases_first_token_then_idle() -> None:
    clock = PhaseClock("p", TIMEOUTS, Deadline.after(10), streaming=True)
    with pytest.raises(ProviderTimeoutError) as caught:
        await clock.sleep(0.5)
    assert (caught.value.phase, caught.value.timeout_s) == ("first_token", 0.2)
    clock.saw_delta()
    await asyncio.sleep(0.15)  # our consumer was slow: not the provider's silence
    await clock.sleep(0.05)
    with pytest.raises(ProviderTimeoutError) as caught:
        await clock.sleep(0.3)
    assert caught.value.phase == "idle"


async def test_outside_cancel_is_not_a_timeout() -> None:
    clock = PhaseClock("p", TIMEOUTS, Deadline.after(10), streaming=False)
    task = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
