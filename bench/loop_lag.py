"""The server's event-loop lag, read from its Prometheus /metrics (telemetry/loop_lag.py).

The server's probe wakes every few milliseconds and observes how late it woke into the
histogram `provider_router_event_loop_lag_seconds`; stalls over the threshold also count in
`provider_router_event_loop_stalls_total`. Two scrapes bracket a window; their difference
bounds the window's worst stall between two bucket edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp

LAG = "provider_router_event_loop_lag_seconds"
STALLS = "provider_router_event_loop_stalls_total"


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """Cumulative histogram buckets (upper edge → count), the total count and the stalls."""

    buckets: dict[float, float]
    count: float
    total_s: float
    stalls: float

    def since(self, before: LagSnapshot) -> dict[str, float | None]:
        """The window between `before` and this snapshot."""
        ticks = self.count - before.count
        edges = sorted(self.buckets)
        upper: float | None = None
        lower = 0.0
        for edge in edges:
            inside = self.buckets[edge] - before.buckets.get(edge, 0.0)
            if inside >= ticks:
                upper = edge
                break
            lower = edge
        return {
            "ticks": ticks,
            "stalls": self.stalls - before.stalls,
            "mean_ms": round((self.total_s - before.total_s) / ticks * 1e3, 3) if ticks else None,
            # The worst lag lies in (max_gt_ms, max_le_ms]; le is None past the last edge.
            "max_gt_ms": round(lower * 1e3, 1),
            "max_le_ms": None if upper is None or math.isinf(upper) else round(upper * 1e3, 1),
        }


def parse(text: str) -> LagSnapshot:
    """The lag figures in a Prometheus text exposition; ValueError when it has none (a
    server without the probe)."""
    buckets: dict[float, float] = {}
    count = total = stalls = 0.0
    for line in text.splitlines():
        if line.startswith(LAG + "_bucket{"):
            edge = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(edge)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(LAG + "_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(LAG + "_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(STALLS):
            stalls = float(line.rsplit(" ", 1)[1])
    if not buckets:
        raise ValueError("no event-loop lag histogram in the exposition")
    return LagSnapshot(buckets, count, total, stalls)


async def scrape(url: str) -> LagSnapshot:
    """GET /metrics and parse it."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return parse(await response.text())
