"""`default`: the configured default provider (and model) first, then the rest by priority."""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """The default deployment, then other models of the default provider, then the rest."""
    provider, model = ctx.settings.default_provider, ctx.settings.default_model

    def closeness(c: Candidate) -> int:
        if c.spec.name != provider:
            return 0
        return 2 if not model or c.target.model == model else 1

    ranked = sorted(candidates, key=closeness, reverse=True)
    return [(c, float(closeness(c)), "configured default" if closeness(c) else "")
            for c in ranked]
