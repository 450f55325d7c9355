"""Planner decisions: explicit, rules (incl. fall-through), preferences, explanations, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from provider_router.domain import (
    Capability,
    ExclusionReason,
    HealthState,
    ModelSpec,
    ProviderSpec,
    RouteTarget,
    Strategy,
)
from provider_router.errors import UnavailableError, UnknownModelError
from provider_router.routing.planner import Planner
from provider_router.routing.rules import Rule
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.strategies import STRATEGIES

from .factories import (
    ISSUE_FORMAT,
    FakeGate,
    make_planner,
    make_registry,
    names,
    parse_settings,
    provider,
    request,
)

NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)
NIGHT = datetime(2026, 1, 1, 3, tzinfo=UTC)

POLICY = ISSUE_FORMAT + """
[[routing.rules]]
name = "free-tier-cheapest"
priority = 50
conditions = { tenant = "free" }
strategy = "cost"

[[routing.rules]]
name = "docs-fallbacks"
priority = 40
conditions = { labels = ["docs"] }
fallbacks = ["bedrock/claude-haiku-4", "anthropic/claude-haiku-4"]
"""

SPECS = (
    provider("anthropic", "claude-sonnet-4-5", "claude-opus-4", "claude-haiku-4", priority=10),
    provider("bedrock", ModelSpec("claude-sonnet-4-5", input_per_mtok=1.0, output_per_mtok=1.0),
             "claude-haiku-4"),
)


def policy() -> RoutingSettings:
    return parse_settings(POLICY)


async def planner_for(settings: RoutingSettings, *specs: ProviderSpec,
                      gate: FakeGate | None = None) -> Planner:
    registry = await make_registry(*(specs or SPECS), settings=settings)
    return make_planner(registry, settings, gate=gate)


def pairs(targets: tuple[RouteTarget, ...]) -> list[str]:
    return [f"{t.provider}/{t.model}" for t in targets]


@pytest.mark.parametrize(("attributes", "labels", "at", "rule", "first"), [
    ({"priority": "critical"}, (), NOON, "critical-issues-opus", "anthropic/claude-opus-4"),
    ({"priority": "critical", "retry_count": "3"}, (), NIGHT, "critical-issues-opus",
     "anthropic/claude-opus-4"),
    ({"retry_count": "1"}, (), NOON, "retry-use-haiku", "anthropic/claude-haiku-4"),
    ({}, (), NIGHT, "off-hours-haiku", "anthropic/claude-haiku-4"),
    ({"tenant": "free"}, (), NOON, "free-tier-cheapest", "bedrock/claude-sonnet-4-5"),
    ({}, ("docs",), NOON, "docs-fallbacks", "bedrock/claude-haiku-4"),
    ({}, (), NOON, "", "anthropic/claude-sonnet-4-5"),
])
async def test_rules_first_match_by_priority(attributes: dict[str, str], labels: tuple[str, ...],
                                             at: datetime, rule: str, first: str) -> None:
    planner = await planner_for(policy())
    decision = planner.decide(request("claude-sonnet-4-5", attributes=attributes, labels=labels),
                              now=at)
    assert decision.rule == rule
    assert pairs(decision.targets)[0] == first


async def test_a_rule_target_leads_and_the_requested_model_follows() -> None:
    planner = await planner_for(policy())
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"retry_count": "1"}),
                              now=NOON)
    assert decision.strategy is Strategy.RULES
    assert pairs(decision.targets) == ["anthropic/claude-haiku-4", "bedrock/claude-haiku-4",
                                       "anthropic/claude-sonnet-4-5", "bedrock/claude-sonnet-4-5"]


async def test_a_strategy_rule_orders_the_requested_candidates() -> None:
    planner = await planner_for(policy())
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"tenant": "free"}),
                              now=NOON)
    assert decision.strategy is Strategy.COST
    assert pairs(decision.targets) == ["bedrock/claude-sonnet-4-5",
                                       "anthropic/claude-sonnet-4-5"]


async def test_a_rule_that_cannot_serve_falls_through_with_a_note() -> None:
    gate = FakeGate({"anthropic": ExclusionReason.BREAKER_OPEN})
    planner = await planner_for(policy(), gate=gate)
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"priority": "critical",
                                                                       "retry_count": "1"}),
                              now=NOON)
    assert decision.rule == "retry-use-haiku"
    assert pairs(decision.targets) == ["bedrock/claude-haiku-4", "bedrock/claude-sonnet-4-5"]
    assert ("rule 'critical-issues-opus' matched but cannot serve: "
            "anthropic/claude-opus-4: breaker_open") in decision.notes
    excluded = {(c.provider, c.model): c.exclusion for c in decision.candidates if not c.eligible}
    assert excluded == {("anthropic", "claude-opus-4"): ExclusionReason.BREAKER_OPEN,
                        ("anthropic", "claude-haiku-4"): ExclusionReason.BREAKER_OPEN,
                        ("anthropic", "claude-sonnet-4-5"): ExclusionReason.BREAKER_OPEN}


async def test_a_rule_missing_a_capability_falls_through() -> None:
    settings = policy()
    specs = (provider("anthropic", "claude-sonnet-4-5", ModelSpec(
                 "claude-opus-4", capabilities=frozenset({Capability.CHAT})),
                 capabilities=frozenset({Capability.CHAT, Capability.VISION})),)
    planner = await planner_for(settings, *specs)
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"priority": "critical"},
                                      capabilities=frozenset({Capability.VISION})), now=NOON)
    assert decision.rule == ""
    assert pairs(decision.targets) == ["anthropic/claude-sonnet-4-5"]
    assert any("critical-issues-opus" in n and "missing_capability" in n
               for n in decision.notes)


async def test_rules_can_be_switched_off_or_overridden_by_the_caller() -> None:
    off = RoutingSettings(rules=policy().rules, rules_enabled=False)
    planner = await planner_for(off)
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"priority": "critical"}))
    assert decision.rule == "" and decision.strategy is Strategy.WEIGHTED
    planner = await planner_for(policy())
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"priority": "critical"},
                                      strategy=Strategy.COST), now=NOON)
    assert decision.rule == "" and decision.strategy is Strategy.COST
    decision = planner.decide(request("claude-sonnet-4-5", attributes={"priority": "critical"},
                                      strategy=Strategy.RULES), now=NOON)
    assert decision.rule == "critical-issues-opus"


async def test_strategy_rules_without_a_match_orders_by_weighted() -> None:
    settings = RoutingSettings(strategy=Strategy.RULES, rules=policy().rules)
    planner = await planner_for(settings)
    decision = planner.decide(request("claude-sonnet-4-5"), now=NOON)
    assert decision.rule == "" and decision.strategy is Strategy.WEIGHTED


async def test_explicit_provider_model_skips_rules_and_preferences() -> None:
    planner = await planner_for(policy())
    decision = planner.decide(request("bedrock/claude-haiku-4", prefer=("anthropic",),
                                      attributes={"priority": "critical"}), now=NOON)
    assert decision.strategy is Strategy.EXPLICIT and decision.rule == ""
    assert pairs(decision.targets) == ["bedrock/claude-haiku-4"]


async def test_prefer_providers_lead_in_the_callers_order() -> None:
    specs = [provider(n, priority=p) for n, p in (("a", 3), ("b", 2), ("c", 1), ("d", 0))]
    planner = await planner_for(RoutingSettings(), *specs)
    decision = planner.decide(request("m", prefer=("c", "zzz", "b")))
    assert names(decision.targets) == ["c", "b", "a", "d"]


async def test_the_explanation_covers_every_candidate() -> None:
    specs = [provider("a", priority=2), provider("b", enabled=False), provider("c", priority=1),
             provider("d")]
    planner = await planner_for(RoutingSettings(), *specs)
    decision = planner.decide(request("m", exclude=frozenset({"d"})))
    assert names(decision.targets) == ["a", "c"]
    assert decision.chosen == RouteTarget("a", "m")
    assert decision.fallbacks == (RouteTarget("c", "m"),)
    reports = {c.provider: c for c in decision.candidates}
    assert (reports["a"].eligible, reports["a"].rank) == (True, 1)
    assert (reports["c"].eligible, reports["c"].rank) == (True, 2)
    assert (reports["b"].exclusion, reports["b"].rank) == (ExclusionReason.DISABLED, 0)
    assert reports["d"].exclusion is ExclusionReason.EXCLUDED_BY_CALLER
    lean = planner.decide(request("m", exclude=frozenset({"d"})), explain=False)
    assert lean.targets == decision.targets and lean.candidates == ()


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_a_lone_candidate_is_chosen_alike_with_or_without_an_explanation(
        strategy: Strategy) -> None:
    # Without an explanation the planner skips the strategy for a lone eligible candidate.
    planner = await planner_for(RoutingSettings(), provider("a"), provider("b", enabled=False))
    asked = request("m", strategy=strategy)
    lean = planner.decide(asked, explain=False)
    assert lean.targets == planner.decide(asked).targets == (RouteTarget("a", "m"),)


async def test_no_eligible_candidate_is_unavailable_naming_each_exclusion() -> None:
    gate = FakeGate({"a": ExclusionReason.BREAKER_OPEN})
    planner = await planner_for(RoutingSettings(), provider("a"), provider("b", enabled=False),
                                gate=gate)
    with pytest.raises(UnavailableError) as caught:
        planner.decide(request("m"))
    assert caught.value.message == "no provider can serve 'm': a/m: breaker_open; b/m: disabled"


async def test_an_unknown_model_is_not_found() -> None:
    planner = await planner_for(RoutingSettings(), provider("a"))
    with pytest.raises(UnknownModelError):
        planner.decide(request("nobody-serves-this"))


async def test_an_alias_with_nothing_registered_is_unavailable_and_says_why() -> None:
    settings = RoutingSettings(aliases={"fast": (RouteTarget("groq", "llama"),)})
    planner = await planner_for(settings, provider("a"))
    with pytest.raises(UnavailableError, match="groq not registered"):
        planner.decide(request("fast"))


async def test_round_robin_turns_are_per_group() -> None:
    settings = RoutingSettings(strategy=Strategy.ROUND_ROBIN)
    planner = await planner_for(settings, provider("a", "m", "n"), provider("b", "m", "n"))
    firsts = [names(planner.decide(request("m")).targets)[0] for _ in range(4)]
    assert firsts == ["a", "b", "a", "b"]
    assert names(planner.decide(request("n")).targets)[0] == "a"


async def test_the_default_strategy_is_reported() -> None:
    settings = RoutingSettings(strategy=Strategy.DEFAULT, default_provider="b")
    planner = await planner_for(settings, provider("a", priority=5), provider("b"))
    decision = planner.decide(request("m"))
    assert decision.strategy is Strategy.DEFAULT
    assert names(decision.targets) == ["b", "a"]


async def test_a_rule_strategy_orders_its_fallbacks_by_priority_on_ties() -> None:
    settings = RoutingSettings(rules=(Rule("listed", fallbacks=("low/m", "high/m", "mid/m"),
                                           strategy=Strategy.CAPABILITY),
                                      Rule("as-listed", priority=-1,
                                           fallbacks=("low/m", "high/m", "mid/m")),))
    specs = [provider("low"), provider("high", priority=9), provider("mid", priority=5),
             provider("base")]
    planner = await planner_for(settings, *specs)
    decision = planner.decide(request("m"))
    assert decision.rule == "listed" and decision.strategy is Strategy.CAPABILITY
    assert names(decision.targets) == ["high", "mid", "low", "base"]
    gate = FakeGate({"high": ExclusionReason.BREAKER_OPEN})
    planner = await planner_for(RoutingSettings(rules=settings.rules[1:]), *specs, gate=gate)
    decision = planner.decide(request("m"))
    assert decision.rule == "as-listed" and decision.strategy is Strategy.RULES
    assert names(decision.targets) == ["low", "mid", "base"]


async def test_every_registry_change_and_live_state_reaches_the_next_decision() -> None:
    # Resolutions are kept per snapshot; nothing else is, so each of these is seen at once.
    gate = FakeGate()
    registry = await make_registry(provider("a", priority=1))
    planner = make_planner(registry, gate=gate)

    def lean() -> list[str]:
        return names(planner.decide(request("m"), explain=False).targets)

    assert lean() == ["a"]
    await registry.register(provider("b", priority=5))
    assert lean() == ["b", "a"]
    await registry.register(provider("b", priority=5, enabled=False))
    assert lean() == ["a"]
    gate.reasons["a"] = ExclusionReason.BREAKER_OPEN
    with pytest.raises(UnavailableError):
        lean()
    del gate.reasons["a"]
    registry.stats.set_health("a", HealthState.UNHEALTHY, 0.0)
    with pytest.raises(UnavailableError):
        lean()
    registry.stats.set_health("a", HealthState.HEALTHY, 1.0)
    assert lean() == ["a"]
    await registry.unregister("a")
    with pytest.raises(UnavailableError):
        lean()
