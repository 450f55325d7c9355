"""`least_loaded`: fewest in-flight calls relative to max_concurrent, blended with reports.

Providers without max_concurrent have no utilisation of their own (only a reported load),
so ties are broken by the raw in-flight count, then by priority.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Lowest load first; score = load in [0, 1]."""
    stats, now = ctx.stats, ctx.now
    scored = [(c, stats.load(c.spec.name, c.spec.max_concurrent, now), stats.in_flight(c.spec.name))
              for c in candidates]
    scored.sort(key=lambda item: (item[1], item[2]))
    return [(c, load, f"{busy} in flight") for c, load, busy in scored]
