"""Statistics merged across replicas through a real redis-server, once per exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provider_router.routing.stats import StatsBook, StatsSummary, merge_summaries
from provider_router.state.redis_link import RedisLink
from provider_router.state.stats_sync import SharedStats, decode, encode
from tests.redis.server import RedisServer


def test_codec_round_trip() -> None:
    summary = StatsSummary(12.5, None, 10.0, 20.0, 30.0, 7, 9, 2, 3)
    assert decode(encode(summary)) == summary


def test_merge_weights_by_samples() -> None:
    merged = merge_summaries([StatsSummary(100.0, None, 100.0, 100.0, 100.0, 30, 30, 0, 1),
                              StatsSummary(200.0, 50.0, 200.0, 400.0, 400.0, 10, 20, 10, 2)])
    assert merged.ema_ms == pytest.approx(125.0)
    assert merged.ttft_ms == 50.0
    assert merged.p95_ms == pytest.approx(175.0)
    assert (merged.samples, merged.outcomes, merged.failures, merged.in_flight) == (40, 50, 10, 3)


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[list[RedisLink]]:
    made = [RedisLink.from_url(redis_server.url, None) for _ in range(2)]
    yield made
    for link in made:
        await link.aclose()


async def test_a_replica_sees_what_the_other_measured(links: list[RedisLink]) -> None:
    book_a, book_b = StatsBook(alpha=1.0), StatsBook(alpha=1.0)
    sync_a = SharedStats(links[0], book_a, "t:")
    sync_b = SharedStats(links[1], book_b, "t:")
    for _ in range(3):
        book_a.start("p")
        book_a.finish("p", 0.100, ok=True)
    book_a.start("p")
    book_a.finish("p", 0.5, ok=False, error="boom")
    book_a.start("slow-only-on-a")
    book_a.finish("slow-only-on-a", 2.0, ok=True)
    book_b.start("p")
    book_b.finish("p", 0.300, ok=True)
    # B has never measured "slow-only-on-a" and knows no latency for it.
    assert book_b.latency_ms("slow-only-on-a", stream=False, now=0.0) is None

    await sync_a.exchange()
    await sync_b.exchange()
    await sync_a.exchange()

    # Sample-weighted: (3 x 100 + 1 x 300) / 4 on both sides.
    assert book_b.latency_ms("p", stream=False, now=0.0) == pytest.approx(150.0)
    assert book_a.latency_ms("p", stream=False, now=0.0) == pytest.approx(150.0)
    assert book_b.latency_ms("slow-only-on-a", stream=False, now=0.0) == pytest.approx(2000.0)
    view = book_b.view("p", now=0.0)
    assert view.error_rate == pytest.approx(1 / 5)
    assert view.latency_ema_ms == pytest.approx(150.0)
    # B's own counters stay its own.
    assert view.request_count == 1


async def test_in_flight_on_other_replicas_counts_as_load(links: list[RedisLink]) -> None:
    book_a, book_b = StatsBook(), StatsBook()
    for _ in range(3):
        book_a.start("p")
    await SharedStats(links[0], book_a, "t:").exchange()
    await SharedStats(links[1], book_b, "t:").exchange()
    assert book_b.load("p", max_concurrent=4, now=0.0) == pytest.approx(0.75)
    assert book_b.in_flight("p") == 0  # the local count stays local


async def test_a_replica_that_stops_reporting_drops_out(links: list[RedisLink]) -> None:
    book_a, book_b = StatsBook(), StatsBook()
    book_a.start("p")
    book_a.finish("p", 0.1, ok=True)
    await SharedStats(links[0], book_a, "t:").exchange()
    await asyncio.sleep(0.01)  # Redis stamps to the millisecond
    sync_b = SharedStats(links[1], book_b, "t:", fresh_s=0.0)
    await sync_b.exchange()
    assert book_b.latency_ms("p", stream=False, now=0.0) is None
