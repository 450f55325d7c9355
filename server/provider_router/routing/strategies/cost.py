"""`cost`: cheapest expected cost for this request first; an unknown price sorts last.

Expected cost = prompt tokens (the caller's estimate, else estimated from the messages) x
input price + completion tokens (max_tokens, else `routing.default_completion_tokens`) x
output price, per million tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.pricing import expected_cost_usd
from provider_router.routing.strategies.base import Ranked, StrategyContext


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Cheapest first; score = expected cost in USD (0 when unknown)."""
    known: list[Ranked] = []
    unknown: list[Ranked] = []
    for c in candidates:
        cost = expected_cost_usd(c.model, ctx.prompt_tokens, ctx.completion_tokens)
        if cost is None:
            unknown.append((c, 0.0, "price unknown: sorted last"))
        else:
            known.append((c, cost, f"${cost:.6f} expected"))
    known.sort(key=lambda item: item[1])
    return known + unknown
