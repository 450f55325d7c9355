"""Hypothesis properties of the planner: exclusions are honoured, chains are complete and
unique, round robin is fair, weighted matches weights, rule order is respected."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from provider_router.domain import (
    Capability,
    ExclusionReason,
    HealthState,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    Strategy,
)
from provider_router.errors import UnavailableError
from provider_router.routing.planner import Planner
from provider_router.routing.registry import Registry
from provider_router.routing.rules import AttributeIn, Rule
from provider_router.routing.settings import RoutingSettings
from provider_router.state.memory import MemoryStateStore

from .factories import FakeClock, FakeGate, request

CAPS = [Capability.CHAT, Capability.VISION, Capability.TOOLS]
GATED = [None, None, None, ExclusionReason.BREAKER_OPEN, ExclusionReason.RATE_LIMITED,
         ExclusionReason.UNAVAILABLE]


@dataclass(frozen=True)
class Draw:
    """One generated provider and the live state around it."""

    name: str
    enabled: bool
    priority: int
    weight: float
    caps: frozenset[Capability]
    max_concurrent: int
    in_flight: int
    gated: ExclusionReason | None
    excluded: bool
    unhealthy: bool

    def spec(self) -> ProviderSpec:
        return ProviderSpec(self.name, ProviderKind.MOCK, models=(ModelSpec("m"),),
                            capabilities=self.caps, priority=self.priority,
                            weight=self.weight, enabled=self.enabled,
                            max_concurrent=self.max_concurrent)

    def eligible(self, required: frozenset[Capability]) -> bool:
        over_limit = self.max_concurrent > 0 and self.in_flight >= self.max_concurrent
        return (self.enabled and self.gated is None and not self.excluded
                and not self.unhealthy and not over_limit and required <= self.caps)


@st.composite
def draws(draw: st.DrawFn) -> list[Draw]:
    count = draw(st.integers(1, 10))
    return [Draw(name=f"p{i}", enabled=draw(st.booleans()), priority=draw(st.integers(-2, 2)),
                 weight=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
                 caps=frozenset(draw(st.sets(st.sampled_from(CAPS)))) | {Capability.CHAT},
                 max_concurrent=draw(st.sampled_from([0, 1, 2])),
                 in_flight=draw(st.integers(0, 2)), gated=draw(st.sampled_from(GATED)),
                 excluded=draw(st.booleans()), unhealthy=draw(st.integers(0, 5)) == 0)
            for i in range(count)]


def build(providers: list[Draw], routing: RoutingSettings, seed: int = 0) -> Planner:
    registry = Registry(MemoryStateStore(None), routing, clock=FakeClock())
    asyncio.run(registry.load([d.spec() for d in providers]))
    for d in providers:
        for _ in range(d.in_flight):
            registry.stats.start(d.name)
        if d.unhealthy:
            registry.stats.set_health(d.name, HealthState.UNHEALTHY, 0.0)
    gate = FakeGate({d.name: d.gated for d in providers if d.gated is not None})
    return Planner(registry, routing, random.Random(seed), gate)


@settings(max_examples=150, deadline=None)
@given(draws(), st.sampled_from(list(Strategy)),
       st.sets(st.sampled_from(CAPS[1:])), st.integers(0, 2**32))
def test_only_eligible_candidates_are_chosen_each_exactly_once(
        providers: list[Draw], strategy: Strategy, required: set[Capability], seed: int) -> None:
    planner = build(providers, RoutingSettings(), seed)
    req = request("m", strategy=strategy, capabilities=frozenset(required),
                  exclude=frozenset(d.name for d in providers if d.excluded),
                  affinity_key=str(seed))
    expected = {d.name for d in providers if d.eligible(frozenset(required))}
    try:
        decision = planner.decide(req)
    except UnavailableError as error:
        assert not expected
        for d in providers:
            assert d.name in error.message
        return
    chosen = [t.provider for t in decision.targets]
    assert len(chosen) == len(set(chosen))
    assert set(chosen) == expected
    reports = {c.provider: c for c in decision.candidates}
    assert len(reports) == len(decision.candidates) == len(providers)
    assert [r.provider for r in sorted((r for r in reports.values() if r.eligible),
                                       key=lambda r: r.rank)] == chosen
    assert all(r.exclusion is not None for r in reports.values() if not r.eligible)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 60))
def test_round_robin_differs_by_at_most_one_pick(providers: int, picks: int) -> None:
    draws_ = [Draw(f"p{i}", True, 0, 1.0, frozenset({Capability.CHAT}), 0, 0, None, False,
                   False) for i in range(providers)]
    planner = build(draws_, RoutingSettings(strategy=Strategy.ROUND_ROBIN))
    counts = Counter(planner.decide(request("m")).chosen.provider for _ in range(picks))
    per_provider = [counts.get(f"p{i}", 0) for i in range(providers)]
    assert max(per_provider) - min(per_provider) <= 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]), min_size=2, max_size=5),
       st.integers(0, 2**32))
def test_weighted_first_picks_match_the_weights(weights: list[float], seed: int) -> None:
    draws_ = [Draw(f"p{i}", True, 0, w, frozenset({Capability.CHAT}), 0, 0, None, False, False)
              for i, w in enumerate(weights)]
    planner = build(draws_, RoutingSettings(strategy=Strategy.WEIGHTED), seed)
    picks = 2000
    counts = Counter(planner.decide(request("m"), explain=False).chosen.provider
                     for _ in range(picks))
    total = sum(weights)
    for i, weight in enumerate(weights):
        p = weight / total
        sigma = math.sqrt(picks * p * (1 - p))
        assert abs(counts.get(f"p{i}", 0) - picks * p) <= 5 * sigma + 1


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[list[Rule], dict[str, str], set[str]]:
    count = draw(st.integers(1, 6))
    rules = [Rule(f"r{i}", priority=draw(st.integers(0, 3)),
                  conditions=tuple(AttributeIn(key, frozenset({draw(st.sampled_from("xy"))}))
                                   for key in draw(st.sets(st.sampled_from("abc")))),
                  provider=f"t{i}", model="m")
             for i in range(count)]
    attributes = {key: draw(st.sampled_from("xy")) for key in draw(st.sets(st.sampled_from(
        "abc")))}
    broken = {f"t{i}" for i in range(count) if draw(st.integers(0, 3)) == 0}
    return rules, attributes, broken


@settings(max_examples=120, deadline=None)
@given(rule_sets())
def test_the_first_matching_rule_that_can_serve_wins(
        case: tuple[list[Rule], dict[str, str], set[str]]) -> None:
    rules, attributes, broken = case
    ordered = tuple(sorted(rules, key=lambda r: -r.priority))  # as parse_rules orders them
    routing = RoutingSettings(rules=ordered)
    targets = [Draw(r.provider, True, 0, 1.0, frozenset({Capability.CHAT}), 0, 0,
                    ExclusionReason.BREAKER_OPEN if r.provider in broken else None, False, False)
               for r in rules]
    fallback = Draw("base", True, 0, 1.0, frozenset({Capability.CHAT}), 0, 0, None, False, False)
    planner = build([*targets, fallback], routing)
    decision = planner.decide(request("m", attributes=attributes))
    expected = next((r.name for r in ordered
                     if all(attributes.get(c.name) in c.values for c in r.conditions
                            if isinstance(c, AttributeIn))
                     and r.provider not in broken), "")
    assert decision.rule == expected
    if expected:
        assert decision.chosen.provider == f"t{expected[1:]}"
