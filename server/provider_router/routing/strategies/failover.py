"""`failover`: a fixed order (`routing.failover_order`); unlisted providers follow by priority."""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Listed providers in list order, then the rest; score = position in the list."""
    listed = ctx.settings.failover_order
    position = {name: i for i, name in enumerate(listed)}
    unlisted = len(listed)
    ranked = sorted(candidates, key=lambda c: position.get(c.spec.name, unlisted))
    return [(c, float(position.get(c.spec.name, unlisted)),
             "" if c.spec.name in position else "not in failover_order") for c in ranked]
