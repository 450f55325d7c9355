"""`latency`: lowest effective latency first (time to first token for streams).

Latency is the EMA the StatsBook keeps, blended with reported values. Unmeasured providers
are explored, not starved: when nothing is measured a random one goes first (spreading the
first requests so every provider gets measured), and otherwise, with probability
`routing.exploration`, a random unmeasured one jumps the queue. The rest of the unmeasured
follow the measured ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Fastest first; score = latency in ms (0 when unmeasured)."""
    stats, stream, now = ctx.stats, ctx.request.stream, ctx.now
    measured: list[Ranked] = []
    unmeasured: list[Ranked] = []
    for c in candidates:
        ms = stats.latency_ms(c.spec.name, stream, now)
        if ms is None:
            unmeasured.append((c, 0.0, "unmeasured"))
        else:
            measured.append((c, ms, ""))
    measured.sort(key=lambda item: item[1])
    if unmeasured and (not measured or ctx.rng.random() < ctx.settings.exploration):
        explore = unmeasured.pop(ctx.rng.randrange(len(unmeasured)))
        return [(explore[0], 0.0, "unmeasured: exploring"), *measured, *unmeasured]
    return measured + unmeasured
