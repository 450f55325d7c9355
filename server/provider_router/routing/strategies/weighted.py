"""`weighted`: priority tiers (higher first), weighted random order within a tier.

Within a tier the order is a weighted random permutation (Efraimidis-Spirakis: sort by
u ** (1 / weight)), so a candidate is first with probability weight / tier total, and the
failover chain after it is weighted the same way. Weight 0 drains a provider: it comes after
every candidate with a positive weight, whatever its tier.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Priority tiers, weighted random within each; score = share of the tier's traffic."""
    tiers: dict[int, list[Candidate]] = {}
    drained: list[Ranked] = []
    for c in candidates:
        if c.spec.weight > 0.0:
            tiers.setdefault(c.spec.priority, []).append(c)
        else:
            drained.append((c, 0.0, "weight 0: draining"))
    ranked: list[Ranked] = []
    for priority in sorted(tiers, reverse=True):
        ranked += _shuffled(ctx, tiers[priority])
    return ranked + drained


def _shuffled(ctx: StrategyContext, tier: list[Candidate]) -> list[Ranked]:
    rnd = ctx.rng.random
    weights = [c.spec.weight for c in tier]
    keys = [rnd() if w == 1.0 else rnd() ** (1.0 / w) for w in weights]
    total = sum(weights)
    order = sorted(range(len(tier)), key=keys.__getitem__, reverse=True)
    return [(tier[i], weights[i] / total, "") for i in order]
