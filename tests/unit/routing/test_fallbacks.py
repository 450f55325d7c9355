"""The request's own fallbacks (RoutingOptions.fallbacks) in the planner's decision."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provider_router.domain import (
    ChatRequest,
    ExclusionReason,
    RouteDecision,
    RouteTarget,
    Strategy,
)
from provider_router.errors import InvalidRequestError, NoCandidateError
from provider_router.routing.settings import RoutingSettings

from .factories import FakeGate, make_planner, make_registry, provider, request

SPECS = (provider("primary", "a", "b", priority=10), provider("backup", "x", "y"))


def with_fallbacks(base: ChatRequest, *targets: str) -> ChatRequest:
    found = tuple(RouteTarget(*t.split("/", 1)) for t in targets)
    return replace(base, routing=replace(base.routing, fallbacks=found))


def pairs(targets: tuple[RouteTarget, ...]) -> list[str]:
    return [f"{t.provider}/{t.model}" for t in targets]


async def decide(req: ChatRequest, gate: FakeGate | None = None,
                 explain: bool = True) -> RouteDecision:
    registry = await make_registry(*SPECS)
    return make_planner(registry, RoutingSettings(), gate=gate).decide(req, explain=explain)


async def test_fallbacks_follow_the_routed_target_in_the_callers_order() -> None:
    decision = await decide(with_fallbacks(request("primary/a"), "backup/y", "backup/x"))
    assert decision.strategy is Strategy.EXPLICIT
    assert pairs(decision.targets) == ["primary/a", "backup/y", "backup/x"]
    explained = {(c.provider, c.model): c for c in decision.candidates}
    assert explained[("backup", "y")].rank == 2
    assert explained[("backup", "y")].detail == (
        "fallback named by the request (routing.fallbacks[0])")
    assert explained[("backup", "x")].detail.endswith("(routing.fallbacks[1])")


async def test_a_fallback_already_in_the_chain_is_not_added_twice() -> None:
    decision = await decide(with_fallbacks(request("a"), "primary/a", "backup/x", "backup/x"))
    assert pairs(decision.targets) == ["primary/a", "backup/x"]


async def test_a_fallback_may_name_a_model_the_provider_does_not_list() -> None:
    decision = await decide(with_fallbacks(request("primary/a"), "backup/unlisted-1"))
    assert pairs(decision.targets) == ["primary/a", "backup/unlisted-1"]


async def test_an_excluded_fallback_is_explained_and_skipped() -> None:
    gate = FakeGate({"backup": ExclusionReason.COOLDOWN})
    decision = await decide(with_fallbacks(request("primary/a"), "backup/x"), gate)
    assert pairs(decision.targets) == ["primary/a"]
    excluded = [(c.provider, c.model, c.exclusion) for c in decision.candidates
                if not c.eligible]
    assert excluded == [("backup", "x", ExclusionReason.COOLDOWN)]


async def test_fallbacks_serve_when_every_routed_candidate_is_excluded() -> None:
    gate = FakeGate({"primary": ExclusionReason.BREAKER_OPEN})
    decision = await decide(with_fallbacks(request("primary/a"), "backup/x"), gate,
                            explain=False)
    assert pairs(decision.targets) == ["backup/x"]


async def test_no_candidate_names_the_excluded_fallbacks_too() -> None:
    gate = FakeGate({"primary": ExclusionReason.BREAKER_OPEN,
                     "backup": ExclusionReason.COOLDOWN})
    with pytest.raises(NoCandidateError) as caught:
        await decide(with_fallbacks(request("primary/a"), "backup/x"), gate)
    assert ("backup", "x", ExclusionReason.COOLDOWN) in caught.value.exclusions


async def test_an_unregistered_fallback_provider_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await decide(with_fallbacks(request("a"), "backup/x", "ghost/m"))
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("routing.fallbacks[1].provider", "no provider named 'ghost' is registered")]
