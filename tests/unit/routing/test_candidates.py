"""Candidate exclusion: each reason, with its detail, and the first reason wins."""

from __future__ import annotations

import pytest

from provider_router.domain import (
    Capability,
    ChatMessage,
    ChatRequest,
    ExclusionReason,
    HealthState,
    ModelSpec,
    ProviderSpec,
    RoutingConstraints,
)
from provider_router.routing import candidates
from provider_router.routing.candidates import CandidateFilter, make_candidate
from provider_router.routing.stats import StatsBook
from provider_router.tokens import estimate_prompt_tokens

from .factories import FakeGate, provider, request

PRICED = ModelSpec("m", input_per_mtok=3.0, output_per_mtok=15.0, context_window=1000,
                   capabilities=frozenset({Capability.CHAT, Capability.VISION}))


def check(spec: ProviderSpec, stats: StatsBook | None = None, gate: FakeGate | None = None,
          prompt_tokens: int = 100, completion_tokens: int = 100,
          req: ChatRequest | None = None) -> tuple[ExclusionReason, str] | None:
    flt = CandidateFilter(req or request(), stats or StatsBook(), gate, 0.0, prompt_tokens,
                          completion_tokens)
    return flt.exclusion(make_candidate(spec, "m"))


def reason(spec: ProviderSpec, stats: StatsBook | None = None, gate: FakeGate | None = None,
           req: ChatRequest | None = None) -> ExclusionReason | None:
    found = check(spec, stats, gate, req=req)
    return found[0] if found else None


def test_an_unconstrained_request_excludes_nothing() -> None:
    assert check(provider("a", PRICED)) is None


@pytest.mark.parametrize(("constraints", "expected"), [
    (RoutingConstraints(max_input_per_mtok=3.0), None),
    (RoutingConstraints(max_input_per_mtok=2.0), ExclusionReason.PRICE),
    (RoutingConstraints(max_output_per_mtok=10.0), ExclusionReason.PRICE),
    (RoutingConstraints(max_cost_usd=1.0), None),
    (RoutingConstraints(max_cost_usd=0.0001), ExclusionReason.PRICE),
    (RoutingConstraints(min_context_window=1000), None),
    (RoutingConstraints(min_context_window=1001), ExclusionReason.CONTEXT_WINDOW),
])
def test_constraints(constraints: RoutingConstraints, expected: ExclusionReason | None) -> None:
    assert reason(provider("a", PRICED), req=request(constraints=constraints)) is expected


def test_an_unknown_price_or_window_cannot_satisfy_a_constraint() -> None:
    unknown = provider("a", "m")
    found = check(unknown, req=request(constraints=RoutingConstraints(max_input_per_mtok=100.0)))
    assert found == (ExclusionReason.PRICE, "input price unknown/Mtok > $100 allowed")
    assert reason(unknown, req=request(constraints=RoutingConstraints(max_cost_usd=5.0))) is \
        ExclusionReason.PRICE
    assert check(unknown, req=request(constraints=RoutingConstraints(min_context_window=10))) == (
        ExclusionReason.CONTEXT_WINDOW, "context window unknown < 10 required")


def test_a_prompt_larger_than_the_context_window_is_excluded() -> None:
    assert check(provider("a", PRICED), prompt_tokens=1000) is None
    assert check(provider("a", PRICED), prompt_tokens=1001) == (
        ExclusionReason.CONTEXT_WINDOW, "~1001 prompt tokens exceed the 1000-token context window")
    assert check(provider("a", "m"), prompt_tokens=10**9) is None  # unknown window: no limit


def test_caller_exclusion_disabled_and_capabilities() -> None:
    assert reason(provider("a"), req=request(exclude=frozenset({"a"}))) is ExclusionReason.EXCLUDED_BY_CALLER
    assert reason(provider("a", enabled=False)) is ExclusionReason.DISABLED
    both = frozenset({Capability.VISION, Capability.TOOLS})
    assert check(provider("a"), req=request(capabilities=both)) == (
        ExclusionReason.MISSING_CAPABILITY, "lacks tools, vision")
    # model capabilities replace the provider's
    assert reason(provider("a", PRICED),
                  req=request(capabilities=frozenset({Capability.VISION}))) is None


def test_live_state_unhealthy_concurrency_latency() -> None:
    stats = StatsBook()
    stats.set_health("sick", HealthState.UNHEALTHY, 0.0)
    assert reason(provider("sick"), stats=stats) is ExclusionReason.UNHEALTHY
    stats.set_health("sick", HealthState.HEALTHY, 1.0)
    assert reason(provider("sick"), stats=stats) is None
    stats.start("busy")
    stats.start("busy")
    assert reason(provider("busy", max_concurrent=2), stats=stats) is \
        ExclusionReason.CONCURRENCY_LIMIT
    assert reason(provider("busy", max_concurrent=3), stats=stats) is None
    stats.start("slow")
    stats.finish("slow", 0.5, ok=True)
    capped = RoutingConstraints(max_latency_ms=400)
    assert reason(provider("slow"), stats, req=request(constraints=capped)) is \
        ExclusionReason.LATENCY
    assert reason(provider("unmeasured"), stats, req=request(constraints=capped)) is None


@pytest.mark.parametrize("gated", [ExclusionReason.BREAKER_OPEN, ExclusionReason.RATE_LIMITED,
                                   ExclusionReason.UNAVAILABLE])
def test_the_gate_vetoes(gated: ExclusionReason) -> None:
    gate = FakeGate({"a": gated})
    assert check(provider("a"), gate=gate) == (gated,
                                               f"{gated.value.replace('_', ' ')} (resilience)")
    assert check(provider("b"), gate=gate) is None


def test_the_first_reason_wins() -> None:
    spec = provider("a", enabled=False)
    gate = FakeGate({"a": ExclusionReason.BREAKER_OPEN})
    assert reason(spec, gate=gate, req=request(exclude=frozenset({"a"}))) is \
        ExclusionReason.EXCLUDED_BY_CALLER


def test_the_prompt_is_estimated_once_and_only_when_a_window_needs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    estimates: list[int] = []

    def counting(messages: tuple[ChatMessage, ...]) -> int:
        estimates.append(estimate_prompt_tokens(messages))
        return estimates[-1]

    monkeypatch.setattr(candidates, "estimate_prompt_tokens", counting)
    long = request(text="x" * 4000)  # ~1004 tokens, over PRICED's 1000-token window
    flt = CandidateFilter(long, StatsBook(), None, 0.0, None, 100)
    assert flt.exclusion(make_candidate(provider("a", "m"), "m")) is None
    assert estimates == []  # no context window, no price limit: nothing needed it
    for _ in range(2):
        assert flt.exclusion(make_candidate(provider("a", PRICED), "m")) == (
            ExclusionReason.CONTEXT_WINDOW,
            "~1004 prompt tokens exceed the 1000-token context window")
    assert estimates == [1004]
    # The caller's own figure is used as given.
    told = request(text="x" * 4000, constraints=RoutingConstraints(estimated_prompt_tokens=10))
    flt = CandidateFilter(told, StatsBook(), None, 0.0, None, 100)
    assert flt.exclusion(make_candidate(provider("a", PRICED), "m")) is None
    assert flt.prompt_tokens() == 10 and estimates == [1004]
