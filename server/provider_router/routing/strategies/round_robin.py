"""`round_robin`: even cycling across the eligible candidates, one counter per model group."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


class RoundRobinCounters:
    """Thread-safe turn counters, one per group (alias or model); owned by the Planner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, int] = {}

    def take(self, group: str) -> int:
        """This decision's turn in `group`; concurrent callers never share a turn."""
        with self._lock:
            turn = self._turns.get(group, 0)
            self._turns[group] = turn + 1
            return turn


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """The candidates rotated by this group's turn; score = position in the cycle."""
    if not candidates:
        return []
    start = ctx.counters.take(ctx.group) % len(candidates)
    rotated = [*candidates[start:], *candidates[:start]]
    return [(c, float(i), "") for i, c in enumerate(rotated)]
