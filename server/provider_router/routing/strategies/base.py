"""What every strategy receives and returns.

A strategy is a pure, synchronous function of (context, eligible candidates in base order)
returning every candidate exactly once, best first, each with a score and a short detail.
Candidates arrive sorted by priority (higher first) then name, and strategies sort stably,
so ties keep that order. Randomness comes only from the injected `random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from provider_router.domain import ChatRequest
from provider_router.routing.candidates import Candidate
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.stats import StatsView

if TYPE_CHECKING:
    from provider_router.routing.strategies.round_robin import RoundRobinCounters

Ranked = tuple[Candidate, float, str]
"""A candidate, its score (meaning depends on the strategy) and a detail for the report."""


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """Everything a strategy may look at for one decision."""

    request: ChatRequest
    stats: StatsView
    rng: random.Random
    now: float
    group: str
    prompt_tokens: int
    completion_tokens: int
    settings: RoutingSettings
    counters: RoundRobinCounters
    notes: list[str]
    """Where a strategy explains itself (e.g. a fallback it took); shown in the decision."""


class StrategyFn(Protocol):
    """The signature of a strategy."""

    def __call__(self, ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
        """Every candidate exactly once, best first."""
        ...


def listed(candidates: Sequence[Candidate]) -> list[Ranked]:
    """The given order kept, unscored. It reads no context, so callers that know the
    strategy is this one need not build a context for it (the planner)."""
    return [(c, 0.0, "") for c in candidates]


def as_listed(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Keep the given order: what the caller named (explicit) or a rule listed (rules)."""
    return listed(candidates)
