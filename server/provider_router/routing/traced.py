"""The planner with a span per routing decision, wired only while tracing is on."""

from __future__ import annotations

import random
from datetime import datetime

from provider_router.domain import ChatRequest, RouteDecision
from provider_router.routing.planner import CandidateGate, Planner
from provider_router.routing.registry import Registry
from provider_router.routing.settings import RoutingSettings
from provider_router.telemetry.tracing import Tracing


class TracedPlanner(Planner):
    """A Planner whose decisions are `route` spans: target, strategy, rule, chain length."""

    def __init__(self, registry: Registry, settings: RoutingSettings, rng: random.Random,
                 gate: CandidateGate | None, tracing: Tracing) -> None:
        super().__init__(registry, settings, rng, gate)
        self._tracing = tracing

    def decide(self, request: ChatRequest, now: datetime | None = None, *,
               explain: bool = True) -> RouteDecision:
        """The decision, inside its span (an exception marks the span as failed)."""
        with self._tracing.decision_span(request) as span:
            decision = super().decide(request, now, explain=explain)
            self._tracing.decided(span, decision)
            return decision
