"""The GC pacer: survivors are frozen on its timer, cyclic garbage among them waits for a sweep.

These tests touch the interpreter's real collector; each one unfreezes everything it froze.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram

from provider_router.gc_pacer import GC_THRESHOLDS, GcPacer


class Node:
    """A weak-referenceable object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _histogram() -> Histogram:
    return Histogram("sweeps", "test", registry=CollectorRegistry())


def _sweeps(histogram: Histogram) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name == "sweeps_count")


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_a_cycle_that_dies_frozen_waits_for_the_sweep() -> None:
    sweeps = _histogram()
    pacer = GcPacer(sweeps, freeze_interval_s=0.01, sweep_interval_s=3600)
    a, b = Node(), Node()
    a.other, b.other = b, a
    cycle = weakref.ref(a)
    pacer.start()
    try:
        await asyncio.sleep(0.05)  # alive at the ticks: frozen
        assert gc.get_freeze_count() > 0
        del a, b
        gc.collect()
        assert cycle() is not None, "a frozen cycle is not scanned by collections"
        assert pacer.sweep() >= 2
        assert cycle() is None
        assert _sweeps(sweeps) == 1
    finally:
        pacer.stop()
    assert not pacer.running


async def test_garbage_is_collected_before_a_freeze_not_frozen() -> None:
    gc.disable()  # no automatic collection may free the cycle first: the tick must
    try:
        pacer = GcPacer(_histogram(), freeze_interval_s=0.01, sweep_interval_s=3600)
        cycle = _cycle()
        pacer.start()
        try:
            await asyncio.sleep(0.05)
            assert gc.get_freeze_count() > 0
            assert cycle() is None
        finally:
            pacer.stop()
    finally:
        gc.enable()


async def test_frozen_objects_are_still_freed_by_reference_counting() -> None:
    pacer = GcPacer(_histogram(), freeze_interval_s=0.01, sweep_interval_s=3600)
    node = Node()
    ref = weakref.ref(node)
    pacer.start()
    try:
        await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0
        del node
        assert ref() is None
    finally:
        pacer.stop()


async def test_the_timer_sweeps_when_the_sweep_interval_has_passed() -> None:
    sweeps = _histogram()
    pacer = GcPacer(sweeps, freeze_interval_s=0.01, sweep_interval_s=0.03)
    pacer.start()
    try:
        await asyncio.sleep(0.2)
        assert _sweeps(sweeps) >= 1
    finally:
        pacer.stop()


async def test_a_zero_interval_leaves_the_collector_alone() -> None:
    thresholds = gc.get_threshold()
    pacer = GcPacer(_histogram(), freeze_interval_s=0.0)
    pacer.start(settle=True)
    await asyncio.sleep(0.03)
    assert not pacer.running
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def test_settling_freezes_start_up_and_collects_young_objects_less_often() -> None:
    pacer = GcPacer(_histogram(), freeze_interval_s=3600, sweep_interval_s=3600)
    pacer.start(settle=True)
    try:
        assert pacer.running
        assert gc.get_freeze_count() > 0  # before the first tick: start-up itself is frozen
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        pacer.stop()


def test_intervals_are_validated() -> None:
    with pytest.raises(ValueError, match="interval"):
        GcPacer(_histogram(), freeze_interval_s=-1.0)
    with pytest.raises(ValueError, match="interval"):
        GcPacer(_histogram(), sweep_interval_s=0.0)
