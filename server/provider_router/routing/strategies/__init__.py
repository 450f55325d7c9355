"""The strategies, by name: each a small module with a pure `order(ctx, candidates)`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from provider_router.domain import Strategy
from provider_router.routing.strategies import (
    affinity,
    capability,
    cost,
    default,
    failover,
    latency,
    least_loaded,
    round_robin,
    weighted,
)
from provider_router.routing.strategies.base import StrategyFn, as_listed

STRATEGIES: Mapping[Strategy, StrategyFn] = MappingProxyType({
    Strategy.EXPLICIT: as_listed,
    Strategy.DEFAULT: default.order,
    Strategy.ROUND_ROBIN: round_robin.order,
    Strategy.WEIGHTED: weighted.order,
    Strategy.LEAST_LOADED: least_loaded.order,
    Strategy.LATENCY: latency.order,
    Strategy.COST: cost.order,
    Strategy.CAPABILITY: capability.order,
    # Rules pick their own targets (see routing/rules.py); ordering them keeps the rule's list.
    Strategy.RULES: as_listed,
    Strategy.FAILOVER: failover.order,
    Strategy.AFFINITY: affinity.order,
})
"""Every strategy by its enum value; read-only."""
