"""Each strategy as a case table, with seeded randomness and a fake stats view."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from provider_router.domain import (
    Capability,
    ChatMessage,
    ChatRequest,
    ImagePart,
    ModelSpec,
    ProviderSpec,
    ResponseFormat,
    ResponseFormatType,
    Role,
    Strategy,
    ToolDefinition,
)
from provider_router.routing.candidates import Candidate, make_candidate
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.strategies import STRATEGIES
from provider_router.routing.strategies.affinity import rendezvous_score
from provider_router.routing.strategies.base import StrategyContext
from provider_router.routing.strategies.capability import wanted
from provider_router.routing.strategies.round_robin import RoundRobinCounters

from .factories import provider, request


@dataclass
class FakeStats:
    """A StatsView from tables."""

    latency: Mapping[str, float] = field(default_factory=dict)
    ttft: Mapping[str, float] = field(default_factory=dict)
    loads: Mapping[str, float] = field(default_factory=dict)
    busy: Mapping[str, int] = field(default_factory=dict)

    def latency_ms(self, provider: str, stream: bool, now: float) -> float | None:
        if stream and provider in self.ttft:
            return self.ttft[provider]
        return self.latency.get(provider)

    def load(self, provider: str, max_concurrent: int, now: float) -> float:
        return self.loads.get(provider, 0.0)

    def in_flight(self, provider: str) -> int:
        return self.busy.get(provider, 0)

    def unhealthy(self) -> frozenset[str]:
        return frozenset()


def cands(*specs: ProviderSpec, model: str = "m") -> list[Candidate]:
    """Candidates in base order (priority desc, name), as the planner passes them."""
    built = [make_candidate(s, model) for s in specs]
    return sorted(built, key=lambda c: (-c.spec.priority, c.spec.name))


def ctx(req: ChatRequest | None = None, stats: FakeStats | None = None, seed: int = 0,
        settings: RoutingSettings | None = None, group: str = "model:m",
        counters: RoundRobinCounters | None = None, prompt_tokens: int = 1000,
        completion_tokens: int = 500) -> StrategyContext:
    return StrategyContext(req or request(), stats or FakeStats(), random.Random(seed), 0.0,
                           group, prompt_tokens, completion_tokens,
                           settings or RoutingSettings(), counters or RoundRobinCounters(), [])


def run(strategy: Strategy, context: StrategyContext,
        candidates: Sequence[Candidate]) -> list[str]:
    ranked = STRATEGIES[strategy](context, candidates)
    return [c.spec.name for c, _, _ in ranked]


def test_every_strategy_has_an_implementation() -> None:
    assert set(STRATEGIES) == set(Strategy)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_returns_each_candidate_once(strategy: Strategy) -> None:
    pool = cands(provider("a", priority=1), provider("b", weight=0), provider("c", weight=3),
                 provider("d", priority=-1))
    order = run(strategy, ctx(request(affinity_key="k")), pool)
    assert sorted(order) == ["a", "b", "c", "d"]
    assert run(strategy, ctx(), []) == []


# --- explicit, rules, default, failover ------------------------------------------------------

def test_explicit_and_rules_keep_the_given_order() -> None:
    pool = [make_candidate(provider(n), "m") for n in ("z", "a", "m")]
    assert run(Strategy.EXPLICIT, ctx(), pool) == ["z", "a", "m"]
    assert run(Strategy.RULES, ctx(), pool) == ["z", "a", "m"]


@pytest.mark.parametrize(("default_provider", "default_model", "expected"), [
    ("b", "m", ["b", "c", "a"]),
    ("b", "", ["b", "c", "a"]),
    ("a", "m", ["a", "c", "b"]),
    ("", "", ["c", "a", "b"]),
])
def test_default_puts_the_configured_default_first(default_provider: str, default_model: str,
                                                   expected: list[str]) -> None:
    settings = RoutingSettings(default_provider=default_provider, default_model=default_model)
    pool = cands(provider("a"), provider("b"), provider("c", priority=2))
    assert run(Strategy.DEFAULT, ctx(settings=settings), pool) == expected


def test_default_prefers_the_default_model_at_the_default_provider() -> None:
    settings = RoutingSettings(default_provider="a", default_model="big")
    spec = provider("a", "big", "small")
    pool = [make_candidate(spec, "small"), make_candidate(spec, "big")]
    ranked = STRATEGIES[Strategy.DEFAULT](ctx(settings=settings), pool)
    assert [c.target.model for c, _, _ in ranked] == ["big", "small"]
    assert [score for _, score, _ in ranked] == [2.0, 1.0]


@pytest.mark.parametrize(("order", "expected"), [
    (("c", "a"), ["c", "a", "d", "b"]),
    ((), ["d", "a", "b", "c"]),
    (("missing", "b"), ["b", "d", "a", "c"]),
])
def test_failover_follows_the_configured_order(order: tuple[str, ...],
                                               expected: list[str]) -> None:
    pool = cands(provider("a"), provider("b"), provider("c"), provider("d", priority=1))
    settings = RoutingSettings(failover_order=order)
    assert run(Strategy.FAILOVER, ctx(settings=settings), pool) == expected


# --- round robin ----------------------------------------------------------------------------

def test_round_robin_cycles_per_group() -> None:
    pool = cands(provider("a"), provider("b"), provider("c"))
    counters = RoundRobinCounters()
    firsts = [run(Strategy.ROUND_ROBIN, ctx(counters=counters), pool)[0] for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    other = run(Strategy.ROUND_ROBIN, ctx(counters=counters, group="alias:fast"), pool)
    assert other == ["a", "b", "c"]  # a fresh group starts at its own first turn
    assert run(Strategy.ROUND_ROBIN, ctx(counters=counters), pool) == ["a", "b", "c"]


# --- weighted -------------------------------------------------------------------------------

def test_weighted_serves_higher_priority_tiers_first() -> None:
    pool = cands(provider("low-1"), provider("low-2"), provider("high", priority=5),
                 provider("mid", priority=2, weight=100))
    for seed in range(20):
        order = run(Strategy.WEIGHTED, ctx(seed=seed), pool)
        assert order[:2] == ["high", "mid"]
        assert sorted(order[2:]) == ["low-1", "low-2"]


def test_weighted_weight_zero_drains_after_everything_else() -> None:
    pool = cands(provider("drained", priority=9, weight=0), provider("a"), provider("b"))
    for seed in range(20):
        assert run(Strategy.WEIGHTED, ctx(seed=seed), pool)[-1] == "drained"
    ranked = STRATEGIES[Strategy.WEIGHTED](ctx(), cands(provider("only", weight=0)))
    assert [(c.spec.name, detail) for c, _, detail in ranked] == [("only",
                                                                   "weight 0: draining")]


def test_weighted_scores_are_tier_shares() -> None:
    pool = cands(provider("a", weight=1), provider("b", weight=3), provider("c", priority=1))
    scores = {c.spec.name: s for c, s, _ in STRATEGIES[Strategy.WEIGHTED](ctx(), pool)}
    assert scores == {"a": 0.25, "b": 0.75, "c": 1.0}


def test_weighted_is_reproducible_with_a_seed() -> None:
    pool = cands(*(provider(f"p{i}", weight=1 + i) for i in range(8)))
    assert run(Strategy.WEIGHTED, ctx(seed=42), pool) == run(Strategy.WEIGHTED, ctx(seed=42),
                                                             pool)


# --- least loaded, latency ------------------------------------------------------------------

def test_least_loaded_orders_by_load_then_in_flight() -> None:
    pool = cands(provider("a"), provider("b"), provider("c"), provider("d", priority=1))
    stats = FakeStats(loads={"a": 0.5, "b": 0.1, "c": 0.1, "d": 0.9}, busy={"b": 7, "c": 2})
    assert run(Strategy.LEAST_LOADED, ctx(stats=stats), pool) == ["c", "b", "a", "d"]


def test_latency_prefers_the_fastest_and_uses_ttft_for_streams() -> None:
    pool = cands(provider("a"), provider("b"), provider("c"))
    stats = FakeStats(latency={"a": 300.0, "b": 100.0, "c": 200.0}, ttft={"a": 20.0})
    assert run(Strategy.LATENCY, ctx(stats=stats), pool) == ["b", "c", "a"]
    assert run(Strategy.LATENCY, ctx(request(stream=True), stats), pool) == ["a", "b", "c"]


def test_latency_explores_unmeasured_providers_without_starving_them() -> None:
    pool = cands(provider("fast"), provider("new-1"), provider("new-2"))
    stats = FakeStats(latency={"fast": 50.0})
    settings = RoutingSettings(exploration=0.2)
    firsts = Counter(run(Strategy.LATENCY, ctx(stats=stats, seed=s, settings=settings), pool)[0]
                     for s in range(1000))
    assert 130 <= firsts["new-1"] + firsts["new-2"] <= 270  # ~20% explore
    assert firsts["new-1"] > 50 and firsts["new-2"] > 50  # both get measured
    never = RoutingSettings(exploration=0.0)
    assert run(Strategy.LATENCY, ctx(stats=stats, settings=never), pool)[0] == "fast"


def test_latency_spreads_first_requests_when_nothing_is_measured() -> None:
    pool = cands(provider("a"), provider("b"), provider("c"))
    firsts = Counter(run(Strategy.LATENCY, ctx(seed=s), pool)[0] for s in range(300))
    assert set(firsts) == {"a", "b", "c"}


# --- cost -----------------------------------------------------------------------------------

def priced(name: str, inp: float | None, out: float | None) -> ProviderSpec:
    return provider(name, ModelSpec("m", input_per_mtok=inp, output_per_mtok=out))


def test_cost_orders_by_expected_cost_and_unknown_prices_go_last() -> None:
    pool = cands(priced("unknown", None, 1.0), priced("cheap-in", 1.0, 10.0),
                 priced("cheap-out", 4.0, 2.0), priced("free", 0.0, 0.0))
    ranked = STRATEGIES[Strategy.COST](ctx(prompt_tokens=1000, completion_tokens=500), pool)
    assert [c.spec.name for c, _, _ in ranked] == ["free", "cheap-out", "cheap-in", "unknown"]
    scores = {c.spec.name: s for c, s, _ in ranked}
    assert scores["cheap-in"] == pytest.approx(1000 * 1.0 / 1e6 + 500 * 10.0 / 1e6)
    assert scores["cheap-out"] == pytest.approx(1000 * 4.0 / 1e6 + 500 * 2.0 / 1e6)
    assert ranked[-1][2] == "price unknown: sorted last"


def test_cost_depends_on_the_prompt_and_completion_sizes() -> None:
    pool = cands(priced("input-heavy", 10.0, 1.0), priced("output-heavy", 1.0, 10.0))
    long_prompt = ctx(prompt_tokens=100_000, completion_tokens=10)
    long_answer = ctx(prompt_tokens=10, completion_tokens=100_000)
    assert run(Strategy.COST, long_prompt, pool)[0] == "output-heavy"
    assert run(Strategy.COST, long_answer, pool)[0] == "input-heavy"


# --- capability -----------------------------------------------------------------------------

def test_capability_ranks_the_best_match_first_ties_by_priority() -> None:
    full = frozenset({Capability.CHAT, Capability.VISION, Capability.TOOLS})
    pool = cands(provider("text", priority=5),
                 provider("vision", capabilities=frozenset({Capability.CHAT, Capability.VISION})),
                 provider("all", capabilities=full),
                 provider("all-high", capabilities=full, priority=1))
    req = ChatRequest(messages=(ChatMessage(Role.USER, parts=(ImagePart(url="http://i"),)),),
                      tools=(ToolDefinition("lookup"),))
    assert wanted(req) == {Capability.VISION, Capability.TOOLS}
    assert run(Strategy.CAPABILITY, ctx(req), pool) == ["all-high", "all", "vision", "text"]


def test_capability_infers_json_and_streaming() -> None:
    req = ChatRequest(messages=(), stream=True,
                      response_format=ResponseFormat(ResponseFormatType.JSON))
    assert wanted(req) == {Capability.JSON, Capability.STREAMING}
    assert wanted(ChatRequest(messages=())) == frozenset()


# --- affinity -------------------------------------------------------------------------------

def test_affinity_is_sticky_per_key() -> None:
    pool = cands(*(provider(f"p{i}") for i in range(5)))
    for key in ("user-1", "user-2", "session-9"):
        orders = {tuple(run(Strategy.AFFINITY, ctx(request(affinity_key=key), seed=s), pool))
                  for s in range(5)}
        assert len(orders) == 1


def test_affinity_moves_few_keys_when_a_provider_is_added() -> None:
    before = cands(*(provider(f"p{i}") for i in range(10)))
    after = cands(*(provider(f"p{i}") for i in range(11)))
    keys = [f"key-{i}" for i in range(2000)]
    first_before = {k: run(Strategy.AFFINITY, ctx(request(affinity_key=k)), before)[0]
                    for k in keys}
    first_after = {k: run(Strategy.AFFINITY, ctx(request(affinity_key=k)), after)[0]
                   for k in keys}
    moved = [k for k in keys if first_before[k] != first_after[k]]
    assert all(first_after[k] == "p10" for k in moved)  # keys only move to the newcomer
    assert 100 < len(moved) < 300  # ~1/11 of them, not a reshuffle


def test_affinity_falls_to_the_second_choice_when_the_first_is_excluded() -> None:
    pool = cands(*(provider(f"p{i}") for i in range(6)))
    order = run(Strategy.AFFINITY, ctx(request(affinity_key="k")), pool)
    without_first = [c for c in pool if c.spec.name != order[0]]
    assert run(Strategy.AFFINITY, ctx(request(affinity_key="k")), without_first) == order[1:]


def test_affinity_respects_weights_and_drains_weight_zero() -> None:
    heavy, light, drained = provider("heavy", weight=9), provider("light"), provider("d", weight=0)
    wins = Counter(max((heavy, light), key=lambda s: rendezvous_score(
        f"k{i}", make_candidate(s, "m"))).name for i in range(2000))
    assert 0.85 < wins["heavy"] / 2000 < 0.95
    assert rendezvous_score("k", make_candidate(drained, "m")) == 0.0


def test_affinity_without_a_key_is_weighted_and_says_so() -> None:
    context = ctx()
    pool = cands(provider("a", priority=1), provider("b"))
    assert run(Strategy.AFFINITY, context, pool) == ["a", "b"]
    assert context.notes == ["affinity: no affinity_key given; ordered by weighted"]
