"""Live stats: EMA, percentiles, rolling error rate, reports blending and expiring, threads."""

from __future__ import annotations

import threading

import pytest

from provider_router.domain import BreakerState, HealthState, MetricsReport
from provider_router.routing.stats import StatsBook, blend


def test_latency_ema_seeds_with_the_first_sample_then_smooths() -> None:
    book = StatsBook(alpha=0.5)
    assert book.latency_ms("a", False, 0.0) is None
    for latency in (0.100, 0.200, 0.400):
        book.start("a")
        book.finish("a", latency, ok=True)
    # 100 -> 0.5*200 + 0.5*100 = 150 -> 0.5*400 + 0.5*150 = 275
    assert book.latency_ms("a", False, 0.0) == pytest.approx(275.0)


def test_ttft_is_used_for_streams_once_measured() -> None:
    book = StatsBook(alpha=1.0)
    book.start("a")
    book.finish("a", 2.0, ok=True)
    assert book.latency_ms("a", True, 0.0) == pytest.approx(2000.0)
    book.start("a")
    book.finish("a", 3.0, ok=True, ttft_s=0.25)
    assert book.latency_ms("a", True, 0.0) == pytest.approx(250.0)
    assert book.latency_ms("a", False, 0.0) == pytest.approx(3000.0)
    assert book.view("a", 0.0).ttft_ema_ms == pytest.approx(250.0)


def test_percentiles_come_from_the_rolling_window() -> None:
    book = StatsBook(window=100)
    for ms in range(1, 201):  # the window keeps the last 100: 101..200 ms
        book.start("a")
        book.finish("a", ms / 1000, ok=True)
    view = book.view("a", 0.0)
    assert (view.latency_p50_ms, view.latency_p95_ms, view.latency_p99_ms) == pytest.approx(
        (150.0, 195.0, 199.0))
    assert view.request_count == 200


def test_error_rate_is_rolling_and_failures_keep_the_last_error() -> None:
    book = StatsBook(window=4)
    for ok in (False, False, True, True):
        book.start("a")
        book.finish("a", 0.1, ok=ok, error="" if ok else "boom 503")
    assert book.view("a", 0.0).error_rate == 0.5
    for _ in range(4):
        book.start("a")
        book.finish("a", 0.1, ok=True)
    view = book.view("a", 0.0)
    assert view.error_rate == 0.0  # the failures left the window
    assert (view.failure_count, view.request_count, view.last_error) == (2, 8, "boom 503")


def test_failures_do_not_move_latency() -> None:
    book = StatsBook()
    book.start("a")
    book.finish("a", 0.1, ok=True)
    book.start("a")
    book.finish("a", 30.0, ok=False, error="timeout")
    assert book.latency_ms("a", False, 0.0) == pytest.approx(100.0)


@pytest.mark.parametrize(("observed", "reported", "expected"), [
    (None, None, None), (100.0, None, 100.0), (None, 300.0, 300.0), (100.0, 300.0, 200.0)])
def test_the_blend_rule(observed: float | None, reported: float | None,
                        expected: float | None) -> None:
    assert blend(observed, reported) == expected


def test_reports_blend_until_they_expire_and_a_new_one_replaces_the_old() -> None:
    book = StatsBook(alpha=1.0, default_ttl_s=60.0)
    book.start("a")
    book.finish("a", 0.1, ok=True)
    book.report(MetricsReport("a", avg_latency_ms=300.0, load=0.8), now=1000.0)
    assert book.latency_ms("a", False, 1059.0) == pytest.approx(200.0)
    assert book.load("a", 0, 1059.0) == pytest.approx(0.8)
    assert book.latency_ms("a", False, 1060.0) == pytest.approx(100.0)  # expired
    assert book.view("a", 1060.0).reported is None
    book.report(MetricsReport("a", error_rate=0.2, ttl_s=5.0), now=2000.0)
    view = book.view("a", 2001.0)
    assert view.load == 0.0 and view.error_rate == pytest.approx(0.1)  # mean of 0 and 0.2
    assert view.reported is not None and view.reported.expires_at == 2005.0


def test_load_is_in_flight_over_max_concurrent_blended_with_reports() -> None:
    book = StatsBook()
    for _ in range(3):
        book.start("a")
    assert book.load("a", 4, 0.0) == 0.75
    assert book.load("a", 2, 0.0) == 1.0
    assert book.load("a", 0, 0.0) == 0.0  # unlimited: no utilisation of its own
    book.report(MetricsReport("a", load=0.25), now=0.0)
    assert book.load("a", 4, 1.0) == 0.5
    assert book.view("a", 1.0, max_concurrent=4).load == 0.5


def test_health_and_the_unhealthy_set() -> None:
    book = StatsBook()
    book.set_health("a", HealthState.UNHEALTHY, 5.0)
    book.set_health("b", HealthState.HEALTHY, 5.0)
    assert book.unhealthy() == {"a"}
    view = book.view("a", 6.0)
    assert (view.health, view.last_check_at) == (HealthState.UNHEALTHY, 5.0)
    book.set_health("a", HealthState.DEGRADED, 7.0)
    assert book.unhealthy() == frozenset()
    book.set_health("b", HealthState.UNHEALTHY, 8.0)
    book.forget("b")
    assert book.unhealthy() == frozenset() and book.health("b") is HealthState.UNKNOWN


def test_a_forgotten_provider_records_nothing_more() -> None:
    book = StatsBook()
    book.start("a")
    book.forget("a")
    book.finish("a", 0.1, ok=True)
    assert book.view("a", 0.0).request_count == 0


def test_as_status_completes_the_view() -> None:
    book = StatsBook()
    book.start("a")
    status = book.view("a", 0.0).as_status(breaker_state=BreakerState.OPEN, available=False,
                                           unavailable_reason="set KEY", is_mock=True)
    assert (status.in_flight, status.breaker_state, status.available) == (
        1, BreakerState.OPEN, False)
    assert (status.unavailable_reason, status.is_mock) == ("set KEY", True)


def test_concurrent_updates_from_threads_lose_nothing() -> None:
    book = StatsBook(window=50)
    calls = 2000

    def worker(index: int) -> None:
        for i in range(calls):
            book.start("shared")
            book.finish("shared", 0.01, ok=(i + index) % 4 != 0, error="x")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view = book.view("shared", 0.0)
    assert view.in_flight == 0
    assert view.request_count == 8 * calls
    assert view.failure_count == 8 * calls // 4
    assert 0.0 <= view.error_rate <= 1.0


def test_percentile_ms_of_latency_or_ttft_needs_min_samples() -> None:
    book = StatsBook(window=100)
    assert book.percentile_ms("a", 95, False, 1) is None
    for ms in range(1, 21):
        book.start("a")
        book.finish("a", ms / 100, ok=True, ttft_s=ms / 1000)
    book.start("a")
    book.finish("a", 9.0, ok=False, error="boom")  # a failure's duration is no sample
    assert book.percentile_ms("a", 95, False, 21) is None
    assert book.percentile_ms("a", 95, False, 20) == pytest.approx(190.0)
    assert book.percentile_ms("a", 50, True, 20) == pytest.approx(10.0)


def test_censored_calls_only_reach_the_percentile_window() -> None:
    book = StatsBook(window=10)
    for _ in range(9):
        book.start("a")
        book.finish("a", 0.010, ok=True, ttft_s=0.005)
    book.start("a")
    book.abandon("a")
    book.censored("a", 2.0, stream=True)
    assert book.percentile_ms("a", 99, True, 10) == pytest.approx(2000.0)
    assert book.percentile_ms("a", 99, False, 9) == pytest.approx(10.0)
    view = book.view("a", 0.0)
    assert (view.request_count, view.failure_count, view.in_flight) == (9, 0, 0)
    assert view.latency_ema_ms == pytest.approx(10.0)
    book.censored("unknown", 1.0, stream=False)  # a forgotten provider: nothing to record
    assert book.percentile_ms("unknown", 50, False, 1) is None
