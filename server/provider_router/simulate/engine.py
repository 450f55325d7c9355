"""Replays recorded requests through one config's routing layer; no provider is called.

What is simulated: model resolution, aliases, rules (time rules at the recorded instant),
capabilities, constraints, the strategy (random ones from a fixed seed, so two runs agree),
and rate limits (rpm/tpm, over the recorded timestamps; a request the first target has no
room for fails over along the chain as the router would), and tenants' policy (allowed
models and providers, rpm/tpm, day/month budgets charged with the simulated cost; see
simulate/tenancy.py). What is not: concurrency limits, breakers and probe health (every
provider is taken as closed and healthy), whether this host has each provider's key, and
latency statistics (the latency and least-loaded strategies see none).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provider_router import domain as d
from provider_router.app import with_default_target
from provider_router.autoregister import providers_from_env
from provider_router.config import Config
from provider_router.errors import NoCandidateError, RouterError
from provider_router.resilience.ratelimit import RateLimiter
from provider_router.routing.planner import Planner
from provider_router.routing.pricing import cost_usd, expected_completion_tokens
from provider_router.routing.registry import Registry
from provider_router.simulate.records import Recorded
from provider_router.simulate.tenancy import TenantLedger, TenantSpend
from provider_router.state.memory import MemoryStateStore
from provider_router.tokens import estimate_prompt_tokens

NOT_SIMULATED = ("concurrency limits",
                 "breakers and probe health (all taken as closed and healthy)",
                 "provider keys on this host (all taken as present)",
                 "latency statistics (latency/least_loaded strategies see none)")
"""What a simulation leaves out; printed with every report."""


@dataclass(slots=True)
class Tally:
    """Requests and money for one provider/model."""

    requests: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Outcome:
    """Where one recorded request went, or why it was rejected."""

    line: int
    target: d.RouteTarget | None = None
    rule: str = ""
    rejection: str = ""


@dataclass(slots=True)
class SimulationResult:
    """What one config would have done with the recorded requests."""

    source: str
    targets: dict[str, Tally] = field(default_factory=dict)
    rules: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    outcomes: list[Outcome] = field(default_factory=list)
    recorded_usage: int = 0
    estimated_usage: int = 0
    rate_limits_simulated: bool = False
    tenants: dict[str, TenantSpend] = field(default_factory=dict)
    tenant_policy: bool = False  # whether the config has tenants whose policy was applied

    @property
    def cost_usd(self) -> float:
        """Total estimated cost."""
        return sum(t.cost_usd for t in self.targets.values())

    @property
    def routed(self) -> int:
        """Requests that found a target."""
        return sum(t.requests for t in self.targets.values())


class _SimulatedGate:
    """The planner's gate in a simulation: only rate limits, at the replayed instant."""

    def __init__(self, registry: Registry, limiter: RateLimiter) -> None:
        self._registry = registry
        self._limiter = limiter
        self.now: float | None = None

    def exclusion(self, provider: str, model: str) -> d.ExclusionReason | None:
        """RATE_LIMITED when the provider has no room at the replayed instant."""
        spec = self._registry.snapshot().providers.get(provider)
        if spec is None or self.now is None or not (spec.rate_limit_rpm or spec.rate_limit_tpm):
            return None
        return None if self._limiter.has_headroom(spec, now=self.now) else (
            d.ExclusionReason.RATE_LIMITED)


class Simulation:
    """One config's routing layer, built as the server builds it, without connectors."""

    def __init__(self, config: Config, env: dict[str, str], seed: int = 0) -> None:
        self._config = config
        self._env = env
        self._seed = seed

    async def run(self, records: tuple[Recorded, ...]) -> SimulationResult:
        """Route every record in order; the result tallies where they went."""
        config = self._config
        specs = config.providers
        if config.autoregister:
            specs = specs + providers_from_env(self._env, config.providers)
        routing = with_default_target(config.routing, specs)
        registry = Registry(MemoryStateStore(None), routing)
        await registry.load(specs)
        limiter = RateLimiter()
        gate = _SimulatedGate(registry, limiter)
        planner = Planner(registry, routing, random.Random(self._seed), gate)
        ledger = TenantLedger(config.tenants, registry.snapshot().providers)
        result = SimulationResult(config.source, tenants=ledger.spend,
                                  tenant_policy=bool(config.tenants))
        for record in records:
            gate.now = record.at
            outcome = await self._route(record, planner, registry, limiter, ledger)
            result.outcomes.append(outcome)
            cost = self._tally(result, record, outcome, registry,
                               routing.default_completion_tokens)
            if outcome.target is None:
                ledger.rejected(record.request)
            else:
                ledger.charge(record.request, record.at, cost)
            result.rate_limits_simulated |= record.at is not None
        return result

    async def _route(self, record: Recorded, planner: Planner, registry: Registry,
                     limiter: RateLimiter, ledger: TenantLedger) -> Outcome:
        now = datetime.fromtimestamp(record.at, UTC) if record.at is not None else None
        tokens = _tokens(record, planner.settings.default_completion_tokens)
        try:
            # The tenant's policy first, as TenantRouter admits before the router routes.
            request = await ledger.admit(record.request, record.at, tokens)
            decision = planner.decide(request, now, explain=False)
        except NoCandidateError as error:
            reasons = sorted({str(reason) for _, _, reason in error.exclusions})
            if reasons == [d.ExclusionReason.RATE_LIMITED]:
                # As the router says: RESOURCE_EXHAUSTED, not "nothing could serve it".
                return Outcome(record.line, rejection="rate_limited")
            return Outcome(record.line, rejection=f"no candidate: {', '.join(reasons)}"
                           if reasons else "no candidate")
        except RouterError as error:
            return Outcome(record.line, rejection=error.reason.lower())
        if record.at is None:
            return Outcome(record.line, decision.chosen, decision.rule)
        providers = registry.snapshot().providers
        for target in decision.targets:
            spec = providers[target.provider]
            if await limiter.try_acquire(spec, tokens, now=record.at) <= 0:
                return Outcome(record.line, target, decision.rule)
        return Outcome(record.line, rejection="rate_limited")

    @staticmethod
    def _tally(result: SimulationResult, record: Recorded, outcome: Outcome,
               registry: Registry, default_completion: int) -> float | None:
        """Count the outcome; the served request's cost (None when unpriced or rejected)."""
        if outcome.target is None:
            result.rejections[outcome.rejection] += 1
            return None
        if outcome.rule:
            result.rules[outcome.rule] += 1
        usage = record.usage
        if usage is None:
            result.estimated_usage += 1
            prompt = estimate_prompt_tokens(record.request.messages)
            completion = expected_completion_tokens(record.request.params, default_completion)
            usage = d.Usage(prompt, completion, prompt + completion, estimated=True)
        else:
            result.recorded_usage += 1
        target = outcome.target
        tally = result.targets.setdefault(f"{target.provider}/{target.model}", Tally())
        tally.requests += 1
        tally.prompt_tokens += usage.prompt_tokens
        tally.completion_tokens += usage.completion_tokens
        spec = registry.snapshot().providers.get(target.provider)
        cost = cost_usd(spec.model(target.model), usage) if spec is not None else None
        if cost is None:
            tally.unpriced += 1
        else:
            tally.cost_usd += cost
        return cost


def _tokens(record: Recorded, default_completion: int) -> int:
    """What a request charges a tpm limit: recorded usage, else the router's estimate."""
    if record.usage is not None:
        return record.usage.total_tokens
    return estimate_prompt_tokens(record.request.messages) + expected_completion_tokens(
        record.request.params, default_completion)
