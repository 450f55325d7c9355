"""Candidates: one provider serving one model, and the tests that exclude one, with a reason.

Candidates are built once per registry snapshot (see registry.py), so a decision allocates
nothing per provider until it reports on it. The tests run cheapest first and stop at the
first failure: one exclusion reason per candidate, the one an operator should fix first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from provider_router.domain import (
    Capability,
    ChatRequest,
    ExclusionReason,
    ModelSpec,
    ProviderSpec,
    RouteTarget,
)
from provider_router.routing.pricing import expected_cost_usd
from provider_router.routing.stats import StatsView
from provider_router.tokens import estimate_prompt_tokens


@dataclass(frozen=True, slots=True)
class Candidate:
    """A provider and one of its models (model None: a model the provider does not list)."""

    spec: ProviderSpec
    model: ModelSpec | None
    target: RouteTarget
    capabilities: frozenset[Capability]
    context_window: int = 0

    @property
    def name(self) -> str:
        """The provider name."""
        return self.spec.name


def make_candidate(spec: ProviderSpec, model: str) -> Candidate:
    """The candidate for `model` at `spec`, whether or not the provider lists the model."""
    listed = spec.model(model)
    window = listed.context_window if listed is not None else 0
    return Candidate(spec, listed, RouteTarget(spec.name, model),
                     spec.model_capabilities(listed), window)


def base_order_key(candidate: Candidate) -> tuple[int, str, str]:
    """The order candidates are kept in: higher priority first, then by name."""
    return (-candidate.spec.priority, candidate.spec.name, candidate.target.model)


class CandidateGate(Protocol):
    """The resilience layer's veto: breaker open, rate limited, concurrency, health."""

    def exclusion(self, provider: str, model: str) -> ExclusionReason | None:
        """Why the provider cannot take this call now, or None when it can."""
        ...


Exclusion = tuple[ExclusionReason, str]
"""An exclusion reason and a human-readable detail."""


class CandidateFilter:
    """The exclusion tests of one request, prepared once and run on each candidate."""

    __slots__ = ("_completion", "_constraints", "_excluded", "_gate", "_messages", "_now",
                 "_priced", "_prompt", "_rare", "_required", "_stats", "_stream", "_unhealthy")

    def __init__(self, request: ChatRequest, stats: StatsView, gate: CandidateGate | None,
                 now: float, prompt_tokens: int | None, completion_tokens: int) -> None:
        options = request.routing
        c = options.constraints
        self._excluded = options.exclude_providers
        self._required = options.capabilities
        self._constraints = c
        self._priced = (c.max_input_per_mtok is not None or c.max_output_per_mtok is not None
                        or c.max_cost_usd is not None)
        self._unhealthy = stats.unhealthy()
        # Tests most requests never need are skipped as a whole: the common request then
        # costs a handful of attribute checks per candidate, and the gate.
        self._rare = (self._priced or c.max_latency_ms is not None
                      or c.min_context_window is not None or bool(self._unhealthy))
        self._stream = request.stream
        self._stats = stats
        self._gate = gate
        self._now = now
        self._messages = request.messages
        # None: the caller's figure if it gave one, else estimated on first need.
        self._prompt = c.estimated_prompt_tokens if prompt_tokens is None else prompt_tokens
        self._completion = completion_tokens

    @property
    def now(self) -> float:
        """The wall-clock reading the tests use (epoch seconds)."""
        return self._now

    @property
    def completion_tokens(self) -> int:
        """The completion size the request is priced at."""
        return self._completion

    def prompt_tokens(self) -> int:
        """The request's prompt tokens: the caller's figure, else an estimate made once.

        Lazy because only a context window, a price limit or the cost strategy needs it, and
        the estimate walks every message.
        """
        prompt = self._prompt
        if prompt is None:
            prompt = self._prompt = estimate_prompt_tokens(self._messages)
        return prompt

    def exclusion(self, c: Candidate) -> Exclusion | None:
        """The first reason the candidate cannot serve the request, or None."""
        spec = c.spec
        if spec.name in self._excluded:
            return ExclusionReason.EXCLUDED_BY_CALLER, "excluded by the caller"
        if not spec.enabled:
            return ExclusionReason.DISABLED, "provider is disabled"
        if not self._required <= c.capabilities:
            missing = ", ".join(sorted(self._required - c.capabilities))
            return ExclusionReason.MISSING_CAPABILITY, f"lacks {missing}"
        if c.context_window and self.prompt_tokens() > c.context_window:
            return (ExclusionReason.CONTEXT_WINDOW, f"~{self._prompt} prompt tokens exceed "
                    f"the {c.context_window}-token context window")
        if spec.max_concurrent and self._stats.in_flight(spec.name) >= spec.max_concurrent:
            return (ExclusionReason.CONCURRENCY_LIMIT,
                    f"{spec.max_concurrent} calls in flight (max_concurrent)")
        if self._rare:
            found = self._rare_exclusion(c)
            if found is not None:
                return found
        # The resilience layer's veto comes last: it is the one test that reads shared state.
        gate = self._gate
        if gate is not None:
            reason = gate.exclusion(spec.name, c.target.model)
            if reason is not None:
                return reason, f"{reason.value.replace('_', ' ')} (resilience)"
        return None

    def _rare_exclusion(self, c: Candidate) -> Exclusion | None:
        limits = self._constraints
        if limits.min_context_window is not None and c.context_window < limits.min_context_window:
            shown = f"{c.context_window} tokens" if c.context_window else "unknown"
            return (ExclusionReason.CONTEXT_WINDOW,
                    f"context window {shown} < {limits.min_context_window} required")
        found = self._price(c.model) if self._priced else None
        if found is None and self._unhealthy and c.spec.name in self._unhealthy:
            found = ExclusionReason.UNHEALTHY, "failing health checks"
        if found is None and limits.max_latency_ms is not None:
            found = self._latency(c, limits.max_latency_ms)
        return found

    def _price(self, model: ModelSpec | None) -> Exclusion | None:
        # A price constraint cannot be shown to hold for an unknown price, so it excludes.
        c = self._constraints
        inp = model.input_per_mtok if model is not None else None
        out = model.output_per_mtok if model is not None else None
        for limit, price, what in ((c.max_input_per_mtok, inp, "input"),
                                   (c.max_output_per_mtok, out, "output")):
            if limit is not None and (price is None or price > limit):
                shown = "unknown" if price is None else f"${price:g}"
                return ExclusionReason.PRICE, f"{what} price {shown}/Mtok > ${limit:g} allowed"
        if c.max_cost_usd is not None:
            cost = expected_cost_usd(model, self.prompt_tokens(), self._completion)
            if cost is None or cost > c.max_cost_usd:
                shown = "unknown" if cost is None else f"${cost:.6f}"
                return ExclusionReason.PRICE, f"expected cost {shown} > ${c.max_cost_usd:g}"
        return None

    def _latency(self, c: Candidate, cap: float) -> Exclusion | None:
        latency = self._stats.latency_ms(c.spec.name, self._stream, self._now)
        if latency is not None and latency > cap:
            return ExclusionReason.LATENCY, f"latency {latency:.0f} ms > {cap:g} ms allowed"
        return None
