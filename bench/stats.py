"""Pure statistics of a run: percentiles, medians, ratios (unit-tested, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; NaN if empty.

    The same definition as numpy's default (`linear`), so figures compare with other tools.
    """
    if not values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    return {"p50": percentile(seconds, 50) * 1e3, "p90": percentile(seconds, 90) * 1e3,
            "p99": percentile(seconds, 99) * 1e3, "max": max(seconds) * 1e3}


def median(values: Sequence[float]) -> float:
    """The median of the finite values; NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return percentile(finite, 50) if finite else math.nan


def per_request_ms(cpu_s: float, requests: int) -> float:
    """CPU milliseconds per request; NaN when nothing completed."""
    return cpu_s * 1e3 / requests if requests else math.nan


def rate(count: int, seconds: float) -> float:
    """Events per second over a window; 0 for an empty window."""
    return count / seconds if seconds > 0 else 0.0
