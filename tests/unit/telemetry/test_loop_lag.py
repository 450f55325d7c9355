"""The loop-lag probe sees a blocked event loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from provider_router.telemetry.loop_lag import LoopLagProbe
from provider_router.telemetry.metrics import Metrics


def _block(seconds: float) -> None:
    """What the probe exists to catch: a synchronous call on the event loop's thread."""
    time.sleep(seconds)


async def test_a_blocking_call_counts_as_a_stall(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    probe = LoopLagProbe(metrics.loop_lag, metrics.loop_stalls, interval_s=0.005, stall_s=0.05)
    probe.start()
    probe.start()  # idempotent
    await asyncio.sleep(0.03)
    with caplog.at_level(logging.WARNING):
        _block(0.12)
        await asyncio.sleep(0.03)
    probe.stop()
    assert not probe.running
    registry = metrics.registry
    # At least the 120 ms block; a loaded machine may preempt the loop once more on its own.
    stalls = registry.get_sample_value("provider_router_event_loop_stalls_total")
    assert stalls is not None and stalls >= 1
    ticks = registry.get_sample_value("provider_router_event_loop_lag_seconds_count")
    assert ticks is not None and ticks >= 3
    worst = registry.get_sample_value("provider_router_event_loop_lag_seconds_bucket",
                                      {"le": "0.075"})
    assert worst is not None and worst < ticks  # one observation above 75 ms
    assert "event loop stalled for" in caplog.text


async def test_a_free_loop_has_no_stalls() -> None:
    metrics = Metrics()
    probe = LoopLagProbe(metrics.loop_lag, metrics.loop_stalls, interval_s=0.005)
    probe.start()
    await asyncio.sleep(0.05)
    probe.stop()
    assert metrics.registry.get_sample_value("provider_router_event_loop_stalls_total") == 0
