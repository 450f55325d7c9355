"""Live per-provider statistics, kept beside the registry snapshot rather than inside it.

Every update is O(1) and takes only its provider's lock, so thousands of concurrent requests
(event loop tasks and threads) can record outcomes without contending on one lock. Readers on
the routing hot path read single attributes without locking: each is a whole value (CPython
attribute reads are atomic), at most a moment stale, never torn.

Blend rule for UpdateMetrics: while a report is unexpired, each effective value (latency,
error rate, load) is the mean of what the router observed and what was reported; the reported
value alone when the router has observed nothing yet; the observed value alone once the report
expires (after its ttl, or `routing.metrics_ttl_s` when it sets none). A new report replaces
the previous one entirely.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from provider_router.domain import (
    BreakerState,
    HealthState,
    MetricsReport,
    ProviderStatus,
    ReportedMetrics,
)

_MS = 1000.0


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A consistent view of one provider's live statistics (values blended with reports)."""

    in_flight: int = 0
    load: float = 0.0
    latency_ema_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    latency_p99_ms: float = 0.0
    ttft_ema_ms: float = 0.0
    error_rate: float = 0.0
    request_count: int = 0
    failure_count: int = 0
    last_error: str = ""
    health: HealthState = HealthState.UNKNOWN
    last_check_at: float | None = None
    reported: ReportedMetrics | None = None

    def as_status(self, *, breaker_state: BreakerState = BreakerState.CLOSED,
                  available: bool = True, unavailable_reason: str = "",
                  is_mock: bool = False) -> ProviderStatus:
        """The ListProviders status, completed with what the resilience layer knows."""
        return ProviderStatus(
            health=self.health, breaker_state=breaker_state, in_flight=self.in_flight,
            load=self.load, latency_ema_ms=self.latency_ema_ms,
            latency_p50_ms=self.latency_p50_ms, latency_p95_ms=self.latency_p95_ms,
            latency_p99_ms=self.latency_p99_ms, ttft_ema_ms=self.ttft_ema_ms,
            error_rate=self.error_rate, request_count=self.request_count,
            failure_count=self.failure_count, last_error=self.last_error,
            last_check_at=self.last_check_at, available=available,
            unavailable_reason=unavailable_reason, is_mock=is_mock, reported=self.reported)


@dataclass(frozen=True, slots=True)
class StatsSummary:
    """One provider's statistics on one replica (or merged over several), as replicas share
    them (state/stats_sync.py): small, and blended by sample count."""

    ema_ms: float | None = None
    ttft_ms: float | None = None
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    samples: int = 0
    outcomes: int = 0
    failures: int = 0
    in_flight: int = 0


def _weighted(pairs: list[tuple[float | None, int]]) -> float | None:
    known = [(value, max(1, weight)) for value, weight in pairs if value is not None]
    total = sum(weight for _, weight in known)
    return sum(value * weight for value, weight in known) / total if known else None


def merge_summaries(summaries: list[StatsSummary]) -> StatsSummary:
    """Several replicas' summaries as one: averages weighted by samples, counts summed.
    Percentiles are the sample-weighted mean of each replica's (an approximation: exact
    merging would need every sample, which is what this sharing avoids)."""
    # A replica without samples has no percentiles (0.0 stands for none): left out of them.
    sampled = [s for s in summaries if s.samples]
    return StatsSummary(
        ema_ms=_weighted([(s.ema_ms, s.samples) for s in summaries]),
        ttft_ms=_weighted([(s.ttft_ms, s.samples) for s in summaries]),
        p50_ms=_weighted([(s.p50_ms, s.samples) for s in sampled]) or 0.0,
        p95_ms=_weighted([(s.p95_ms, s.samples) for s in sampled]) or 0.0,
        p99_ms=_weighted([(s.p99_ms, s.samples) for s in sampled]) or 0.0,
        samples=sum(s.samples for s in summaries), outcomes=sum(s.outcomes for s in summaries),
        failures=sum(s.failures for s in summaries),
        in_flight=sum(s.in_flight for s in summaries))


class StatsView(Protocol):
    """What routing reads on the hot path; StatsBook implements it, tests may fake it."""

    def latency_ms(self, provider: str, stream: bool, now: float) -> float | None:
        """Effective latency (TTFT for streams when measured); None when unmeasured."""
        ...

    def load(self, provider: str, max_concurrent: int, now: float) -> float:
        """Effective load in [0, 1]."""
        ...

    def in_flight(self, provider: str) -> int:
        """Calls in flight now."""
        ...

    def unhealthy(self) -> frozenset[str]:
        """The providers whose last health check failed."""
        ...


def blend(observed: float | None, reported: float | None) -> float | None:
    """The module's blend rule: the mean when both are known, else whichever is."""
    if observed is None:
        return reported
    if reported is None:
        return observed
    return (observed + reported) / 2.0


def _ema(previous: float | None, sample: float, alpha: float) -> float:
    # The first sample seeds the average instead of being dragged towards zero.
    return sample if previous is None else alpha * sample + (1.0 - alpha) * previous


def _percentile(ordered: list[float], q: float) -> float:
    # Nearest rank: a value that was actually observed, no interpolation.
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class _Cell:
    """One provider's mutable counters; mutated only under its own lock."""

    __slots__ = ("checked_at", "ema_ms", "failure_count", "failures", "health", "in_flight",
                 "last_error", "lock", "outcomes", "peers", "reported", "request_count",
                 "samples", "ttft_ms", "ttft_samples")

    def __init__(self, window: int) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.ema_ms: float | None = None
        self.ttft_ms: float | None = None
        self.samples: deque[float] = deque(maxlen=window)
        self.ttft_samples: deque[float] = deque(maxlen=window)
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.failures = 0
        self.request_count = 0
        self.failure_count = 0
        self.last_error = ""
        self.health = HealthState.UNKNOWN
        self.checked_at: float | None = None
        self.reported: ReportedMetrics | None = None
        # What the other replicas measured (merged), when state is shared; else None.
        self.peers: StatsSummary | None = None

    def live_report(self, now: float) -> ReportedMetrics | None:
        reported = self.reported
        return reported if reported is not None and reported.expires_at > now else None

    def error_rate(self) -> float | None:
        peers = self.peers
        if peers is not None and peers.outcomes:
            return (self.failures + peers.failures) / (len(self.outcomes) + peers.outcomes)
        return self.failures / len(self.outcomes) if self.outcomes else None

    def summary(self) -> StatsSummary:
        """This replica's own figures (never the peers'), for sharing."""
        with self.lock:
            ordered = sorted(self.samples)
            return StatsSummary(self.ema_ms, self.ttft_ms, _percentile(ordered, 0.50),
                                _percentile(ordered, 0.95), _percentile(ordered, 0.99),
                                len(ordered), len(self.outcomes), self.failures,
                                self.in_flight)

    def with_peers(self) -> StatsSummary:
        """This replica's figures merged with the peers' (a shared view's readers)."""
        own = self.summary()
        peers = self.peers
        return own if peers is None else merge_summaries([own, peers])


class StatsBook:
    """Live statistics of every provider: in-flight, EMA latency, percentiles, error rate."""

    def __init__(self, alpha: float = 0.3, window: int = 100,
                 default_ttl_s: float = 60.0) -> None:
        self._alpha = alpha
        self._window = window
        self._default_ttl_s = default_ttl_s
        self._cells: dict[str, _Cell] = {}
        self._lock = threading.Lock()
        # Kept apart so that routing tests one set instead of every candidate's cell.
        self._unhealthy: frozenset[str] = frozenset()

    def _cell(self, provider: str) -> _Cell:
        cell = self._cells.get(provider)
        if cell is None:
            with self._lock:
                cell = self._cells.setdefault(provider, _Cell(self._window))
        return cell

    # --- writers ----------------------------------------------------------------------------

    def start(self, provider: str) -> None:
        """A call to the provider begins."""
        cell = self._cell(provider)
        with cell.lock:
            cell.in_flight += 1

    def abandon(self, provider: str) -> None:
        """A call ended without a verdict (cancelled by the caller): only in-flight drops."""
        cell = self._cell(provider)
        with cell.lock:
            cell.in_flight = max(0, cell.in_flight - 1)

    def finish(self, provider: str, latency_s: float, ok: bool, ttft_s: float | None = None,
               error: str = "") -> None:
        """A call ends: record its latency (and time to first token for streams) and outcome."""
        cell = self._cells.get(provider)
        if cell is None:
            return  # forgotten (unregistered) while the call was in flight
        latency_ms = latency_s * _MS
        a = self._alpha
        with cell.lock:
            # Never below zero: a call begun before its provider was removed and registered
            # again ends on a fresh cell. (A test, not max(): this runs on every attempt.)
            if cell.in_flight > 0:
                cell.in_flight -= 1
            cell.request_count += 1
            outcomes = cell.outcomes
            if len(outcomes) == outcomes.maxlen and outcomes[0]:
                cell.failures -= 1
            outcomes.append(not ok)
            if not ok:
                cell.failures += 1
                cell.failure_count += 1
                cell.last_error = error
                return  # a failure's duration says nothing about how fast answers are
            cell.samples.append(latency_ms)
            cell.ema_ms = _ema(cell.ema_ms, latency_ms, a)
            if ttft_s is not None:
                ttft_ms = ttft_s * _MS
                cell.ttft_ms = _ema(cell.ttft_ms, ttft_ms, a)
                cell.ttft_samples.append(ttft_ms)  # for percentiles (hedging)

    def censored(self, provider: str, elapsed_s: float, stream: bool) -> None:
        """A call cancelled after `elapsed_s` without an answer (or first token) because a
        hedge answered first: it would have taken at least that long. Only the percentile
        window learns it; without it the slow calls hedging cuts short would vanish from the
        percentiles and a "p95" delay would fall with every hedge it fires."""
        cell = self._cells.get(provider)
        if cell is None:
            return
        with cell.lock:
            (cell.ttft_samples if stream else cell.samples).append(elapsed_s * _MS)

    def report(self, report: MetricsReport, now: float) -> ReportedMetrics:
        """Record externally measured values; they replace any earlier report."""
        ttl = report.ttl_s if report.ttl_s is not None else self._default_ttl_s
        reported = ReportedMetrics(avg_latency_ms=report.avg_latency_ms,
                                   error_rate=report.error_rate, load=report.load,
                                   expires_at=now + ttl)
        self._cell(report.provider).reported = reported
        return reported

    def set_health(self, provider: str, health: HealthState, checked_at: float) -> None:
        """Record the result of a health check."""
        cell = self._cell(provider)
        # One lock around both, so the cell and the set never disagree (health checks are rare).
        with self._lock, cell.lock:
            cell.health = health
            cell.checked_at = checked_at
            if health is HealthState.UNHEALTHY:
                self._unhealthy = self._unhealthy | {provider}
            elif provider in self._unhealthy:
                self._unhealthy = self._unhealthy - {provider}

    def summaries(self) -> dict[str, StatsSummary]:
        """Every provider's own figures on this replica, for the other replicas."""
        return {name: cell.summary() for name, cell in list(self._cells.items())}

    def set_peers(self, peers: dict[str, StatsSummary]) -> None:
        """What the other replicas measured, merged per provider; a provider left out has
        no peer figures any more."""
        for name, cell in list(self._cells.items()):
            cell.peers = peers.get(name)
        for name in peers.keys() - self._cells.keys():
            self._cell(name).peers = peers[name]

    def forget(self, provider: str) -> None:
        """Drop a removed provider's statistics; calls still in flight record nothing."""
        with self._lock:
            self._cells.pop(provider, None)
            self._unhealthy = self._unhealthy - {provider}

    # --- hot-path readers (the strategies' StatsView) ---------------------------------------

    def latency_ms(self, provider: str, stream: bool, now: float) -> float | None:
        """Effective latency (TTFT for streams when measured); None when nothing is known."""
        cell = self._cells.get(provider)
        if cell is None:
            return None
        if cell.peers is not None:
            return self._shared_latency_ms(cell, stream, now)
        if stream and cell.ttft_ms is not None:
            return cell.ttft_ms
        reported = cell.live_report(now)
        return blend(cell.ema_ms, reported.avg_latency_ms if reported else None)

    def _shared_latency_ms(self, cell: _Cell, stream: bool, now: float) -> float | None:
        merged = cell.with_peers()
        if stream and merged.ttft_ms is not None:
            return merged.ttft_ms
        reported = cell.live_report(now)
        return blend(merged.ema_ms, reported.avg_latency_ms if reported else None)

    def load(self, provider: str, max_concurrent: int, now: float) -> float:
        """Effective load in [0, 1]: in-flight (on every replica, when shared) over
        max_concurrent, blended with reports."""
        cell = self._cells.get(provider)
        if cell is None:
            return 0.0
        peers = cell.peers
        in_flight = cell.in_flight + (peers.in_flight if peers is not None else 0)
        observed = min(1.0, in_flight / max_concurrent) if max_concurrent > 0 else None
        reported = cell.live_report(now)
        return blend(observed, reported.load if reported else None) or 0.0

    def in_flight(self, provider: str) -> int:
        """Calls in flight now."""
        cell = self._cells.get(provider)
        return cell.in_flight if cell is not None else 0

    def percentile_ms(self, provider: str, q: float, stream: bool,
                      min_samples: int) -> float | None:
        """The q-th percentile (0-100) of the provider's recent latencies, or of its times to
        first token for streams; None with fewer than `min_samples` observations."""
        cell = self._cells.get(provider)
        if cell is None:
            return None
        with cell.lock:
            ordered = sorted(cell.ttft_samples if stream else cell.samples)
        if len(ordered) < min_samples:
            return None
        return _percentile(ordered, q / 100.0)

    def health(self, provider: str) -> HealthState:
        """The last recorded health."""
        cell = self._cells.get(provider)
        return cell.health if cell is not None else HealthState.UNKNOWN

    def unhealthy(self) -> frozenset[str]:
        """The providers whose last health check failed."""
        return self._unhealthy

    # --- full view --------------------------------------------------------------------------

    def view(self, provider: str, now: float, max_concurrent: int = 0) -> ProviderStats:
        """Everything known about a provider, blended with unexpired reports."""
        cell = self._cells.get(provider)
        if cell is None:
            return ProviderStats()
        shared = cell.with_peers() if cell.peers is not None else None
        with cell.lock:
            ordered = sorted(cell.samples)
            reported = cell.live_report(now)
            observed_errors = cell.error_rate()
            snapshot = (cell.in_flight, cell.ema_ms, cell.ttft_ms, cell.request_count,
                        cell.failure_count, cell.last_error, cell.health, cell.checked_at)
        in_flight, ema, ttft, requests, failures, last_error, health, checked_at = snapshot
        if shared is not None:
            return self._shared_view(provider, now, max_concurrent, shared, cell)
        return ProviderStats(
            in_flight=in_flight,
            load=self.load(provider, max_concurrent, now),
            latency_ema_ms=blend(ema, reported.avg_latency_ms if reported else None) or 0.0,
            latency_p50_ms=_percentile(ordered, 0.50),
            latency_p95_ms=_percentile(ordered, 0.95),
            latency_p99_ms=_percentile(ordered, 0.99),
            ttft_ema_ms=ttft or 0.0,
            error_rate=blend(observed_errors, reported.error_rate if reported else None) or 0.0,
            request_count=requests, failure_count=failures, last_error=last_error,
            health=health, last_check_at=checked_at, reported=reported)

    def _shared_view(self, provider: str, now: float, max_concurrent: int,
                     shared: StatsSummary, cell: _Cell) -> ProviderStats:
        """`view` with every replica's figures merged in (state shared through Redis)."""
        reported = cell.live_report(now)
        return ProviderStats(
            in_flight=cell.in_flight, load=self.load(provider, max_concurrent, now),
            latency_ema_ms=blend(shared.ema_ms,
                                 reported.avg_latency_ms if reported else None) or 0.0,
            latency_p50_ms=shared.p50_ms, latency_p95_ms=shared.p95_ms,
            latency_p99_ms=shared.p99_ms, ttft_ema_ms=shared.ttft_ms or 0.0,
            error_rate=blend(cell.error_rate(),
                             reported.error_rate if reported else None) or 0.0,
            request_count=cell.request_count, failure_count=cell.failure_count,
            last_error=cell.last_error, health=cell.health, last_check_at=cell.checked_at,
            reported=reported)
