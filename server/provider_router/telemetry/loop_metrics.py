"""Counters and histograms written only from the event loop, read at scrape time.

prometheus_client's metrics take a lock on every update (a histogram one per bucket it
walks) so that any thread may write them: about 2-4k CPU instructions per observation. The
per-call metrics of Chat and StreamChat (tokens, cost, overhead, upstream time, TTFT) are
written by one thread only, the event loop's, so here an update is a dict lookup and a float
addition (a histogram adds one C-level bisect). The exposition thread reads them through a
Collector: it copies each series (a copy is one step under the GIL, so never torn) and
builds the families prometheus_client renders. A scrape may see a histogram's count one
observation ahead of its sum: Prometheus tolerates that, and the next scrape is exact.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class LoopCounter:
    """A labelled counter: one float per tuple of label values."""

    __slots__ = ("documentation", "labelnames", "name", "values")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Add `amount` (>= 0) to the series of these label values."""
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        """The counter family as it stands."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class LoopHistogram:
    """A labelled histogram: per tuple of label values, a count per bucket and the sum."""

    __slots__ = ("bounds", "documentation", "labelnames", "name", "series")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(buckets))
        # Per series: one count per bound, one for +Inf, then the sum.
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """Count `value` in the series of these label values."""
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        # bisect_left: a value equal to a bound belongs to that bucket (`le`).
        series[bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def family(self) -> Metric:
        """The histogram family as it stands (cumulative buckets, as exposed)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(_bound(b) for b in self.bounds), "+Inf"]
        for labels, series in list(self.series.items()):
            counts = list(series)  # one copy: the loop thread may be adding to it
            buckets, total = [], 0.0
            for edge, count in zip(edges, counts, strict=False):
                total += count
                buckets.append((edge, total))
            family.add_metric(labels, buckets, counts[-1])
        return family


def _bound(value: float) -> str:
    return repr(float(value))


class LoopMetrics(Collector):
    """The loop-written metrics of one registry, collected at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._metrics: list[LoopCounter | LoopHistogram] = []
        registry.register(self)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> LoopCounter:
        """A new counter (`name` without `_total`, as prometheus_client's)."""
        metric = LoopCounter(name, documentation, labelnames)
        self._metrics.append(metric)
        return metric

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str],
                  buckets: Sequence[float]) -> LoopHistogram:
        """A new histogram."""
        metric = LoopHistogram(name, documentation, labelnames, buckets)
        self._metrics.append(metric)
        return metric

    def collect(self) -> Iterator[Metric]:
        """Every family, for the exposition."""
        for metric in self._metrics:
            yield metric.family()
