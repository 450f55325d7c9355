"""The router: the failover loop over the planner's targets, and the admin pass-throughs.

Chat and StreamChat spend one deadline across the whole chain; each target is run by the
Dispatcher (admission, breaker, same-provider retries). Targets whose breaker closed only
recently are moved back in the chain with a probability that falls as the ramp proceeds, so
a recovered provider gets its share back gradually. When no candidate answers, the most
informative error is returned with every attempt (routing/outcome.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime

from provider_router import domain as d
from provider_router.connectors.factory import resolve_api_key
from provider_router.errors import (
    InvalidRequestError,
    NoCandidateError,
    RateLimitedError,
)
from provider_router.resilience.deadline import Deadline
from provider_router.routing.dispatch import Chain, Dispatcher, Resilience
from provider_router.routing.hedge import Hedger
from provider_router.routing.hedge_config import HedgeSettings
from provider_router.routing.key_policy import KeyReferencePolicy
from provider_router.routing.outcome import chain_failure, chat_response
from provider_router.routing.planner import Planner
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.pricing import cost_usd, expected_completion_tokens
from provider_router.routing.register_safety import RegisterSafety
from provider_router.routing.registry import Registry
from provider_router.routing.status import ProviderStatusView
from provider_router.routing.streaming import StreamChain, StreamRun
from provider_router.telemetry.metrics import Metrics


def _cost(spec: d.ProviderSpec, model: str, usage: d.Usage) -> float | None:
    return cost_usd(spec.model(model), usage)


class Router:
    """Routes, calls, fails over; the servicer's RouterPort."""

    def __init__(self, registry: Registry, planner: Planner, pool: ConnectorPool,
                 resilience: Resilience, status: ProviderStatusView, metrics: Metrics,
                 env: Mapping[str, str], key_policy: KeyReferencePolicy | None = None,
                 default_completion_tokens: int = 256,
                 register_safety: RegisterSafety | None = None,
                 hedge: HedgeSettings | None = None) -> None:
        self._registry = registry
        self._register_safety = register_safety or RegisterSafety()
        # The same completion estimate the cost strategy uses ([routing]).
        self._default_completion_tokens = default_completion_tokens
        self._key_policy = key_policy or KeyReferencePolicy(("*_API_KEY",), ())
        self._planner = planner
        self._pool = pool
        self._r = resilience
        self._status = status
        self._env = env
        self._metrics = metrics
        self._dispatcher = Dispatcher(registry, pool, resilience, metrics)
        # Hedged requests (routing/hedge.py). `_hedge_default` is tested first so that with
        # hedging configured off a request only costs one more attribute test.
        hedge = hedge or HedgeSettings()
        self._hedger = Hedger(self._dispatcher, self._spec, registry.stats, metrics, hedge)
        self._hedge_default = hedge.policy
        self._streams = StreamChain(self._dispatcher, resilience.settings.stream_recovery,
                                    self._spec, self._hedger)

    # --- routing ------------------------------------------------------------------------

    def route(self, request: d.ChatRequest, at: float | None) -> d.RouteDecision:
        """Decide without calling any provider."""
        now = datetime.fromtimestamp(at, UTC) if at is not None else None
        return self._planner.decide(request, now)

    def _spec(self, name: str) -> d.ProviderSpec | None:
        return self._registry.snapshot().providers.get(name)

    def _targets(self, decision: d.RouteDecision) -> tuple[d.RouteTarget, ...]:
        """The chain, with recently recovered providers moved back while they ramp up."""
        targets = decision.targets
        if len(targets) < 2:
            return targets
        breakers, rng = self._r.breakers, self._r.rng
        front: list[d.RouteTarget] = []
        back: list[d.RouteTarget] = []
        for target in targets:
            share = breakers.admission_fraction(target.provider, target.model)
            (front if share >= 1.0 or rng.random() < share else back).append(target)
        return targets if not back else (*front, *back)

    def _chain(self, request: d.ChatRequest) -> Chain:
        completion = expected_completion_tokens(request.params, self._default_completion_tokens)
        return Chain(request, completion)

    async def _decide(self, request: d.ChatRequest, deadline: Deadline) -> d.RouteDecision:
        """The planner's decision for a call. When rate limits (beside open breakers) are all
        that exclude every candidate, that is RESOURCE_EXHAUSTED with the wait until the
        first has room again, or, with wait_for_capacity, a wait for it within the deadline."""
        while True:
            try:
                return self._planner.decide(request, explain=False)
            except NoCandidateError as error:
                wait = self._capacity_wait(error)
                if wait is None:
                    raise
                if not self._r.settings.wait_for_capacity or wait >= deadline.remaining():
                    raise RateLimitedError(f"every candidate is rate limited; {error.message}",
                                           wait) from None
                await asyncio.sleep(wait)

    def _capacity_wait(self, error: NoCandidateError) -> float | None:
        """Seconds until a rate-limited candidate has room, if only limits stand in the way."""
        providers = self._registry.snapshot().providers
        waits: list[float] = []
        for provider, model, reason in error.exclusions:
            spec = providers.get(provider)
            if reason is d.ExclusionReason.BREAKER_OPEN:
                continue  # it does not serve either way; the limited ones decide
            if reason is d.ExclusionReason.COOLDOWN:
                waits.append(self._r.cooldowns.remaining(provider, model))
                continue
            if reason is not d.ExclusionReason.RATE_LIMITED or spec is None:
                return None
            waits.append(self._r.limiter.wait_s(spec))
        return min(waits) if waits else None

    async def chat(self, request: d.ChatRequest, deadline: Deadline,
                   decision: d.RouteDecision | None = None) -> d.ChatResponse:
        """Route and complete, failing over along the chain within the deadline; `decision`
        when the caller (the response cache) already decided."""
        started = time.perf_counter()
        if decision is None:
            decision = await self._decide(request, deadline)
        chain = self._chain(request)
        targets = self._targets(decision)
        if self._hedge_default is not None or request.routing.hedge is not None:
            hedge = self._hedger.policy(request)
            if hedge is not None:
                return await self._hedger.chat_response(
                    hedge, request, decision, targets, deadline, chain, started,
                    self._waited_for_capacity, self._r.settings.error_pick)
        for rounds in range(2):
            for index, target in enumerate(targets):
                spec = self._dispatcher.usable(self._spec(target.provider), target, chain,
                                               deadline)
                if spec is None:
                    continue
                result = await self._dispatcher.chat(spec, target, request, deadline,
                                                     len(targets) - index - 1, chain)
                if result is not None:
                    return chat_response(target, spec, result, chain, decision, started)
            if rounds or not await self._waited_for_capacity(chain, deadline):
                break
        raise chain_failure(chain, deadline, self._r.settings.error_pick)

    async def _waited_for_capacity(self, chain: Chain, deadline: Deadline) -> bool:
        """With wait_for_capacity on, sleep until the first rate-limited candidate has room
        again (when that fits the deadline) so the chain can be tried once more."""
        if not (self._r.settings.wait_for_capacity and chain.waits and not chain.errors):
            return False
        wait = min(chain.waits)
        if wait >= deadline.remaining():
            return False
        await asyncio.sleep(wait)
        chain.waits.clear()
        return True

    async def stream(self, request: d.ChatRequest, deadline: Deadline,
                     decision: d.RouteDecision | None = None
                     ) -> AsyncGenerator[d.RouterStreamEvent, None]:
        """Route and stream; see routing/streaming.py for the recovery rules."""
        if decision is None:
            decision = await self._decide(request, deadline)
        run = StreamRun(time.perf_counter(), decision, self._chain(request))
        if self._hedge_default is not None or request.routing.hedge is not None:
            run.hedge = self._hedger.policy(request)
        targets = self._targets(decision)
        for rounds in range(2):
            events = self._streams.run(request, targets, run, deadline, _cost)
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    yield event
            # As for chat: once more after waiting, when local limits were all that stood
            # in the way (nothing reached the caller then).
            if run.finished or run.started or rounds or not await self._waited_for_capacity(
                    run.chain, deadline):
                break
        if not run.finished:
            raise chain_failure(run.chain, deadline, self._r.settings.error_pick)

    # --- admin --------------------------------------------------------------------------

    async def register(self, spec: d.ProviderSpec, validate_only: bool) -> d.RegisterOutcome:
        """Add or replace a provider (or only validate it)."""
        outcome = self._registry.check(spec)  # a malformed spec is refused before any lookup
        refused = (self._key_policy.violations(spec)
                   + await self._register_safety.violations(spec))
        if refused:
            raise InvalidRequestError("provider spec refused", refused)
        if validate_only:
            return outcome
        return await self._registry.register(spec)

    async def unregister(self, name: str) -> d.ProviderSpec:
        """Remove a provider; its connector closes when its calls finish."""
        spec = await self._registry.unregister(name)
        self._pool.retire(name)
        self._r.breakers.remove(name)
        self._r.cooldowns.forget(name)
        await self._r.limiter.forget(name)
        return spec

    def update_metrics(self, report: d.MetricsReport) -> d.ProviderStatus:
        """Blend externally measured metrics in; returns the provider's status."""
        self._registry.update_metrics(report)
        return self._status.status(report.provider)

    def providers(self, names: tuple[str, ...]) -> list[d.ProviderView]:
        """Every provider (or the named ones) with live status, sorted by name."""
        return self._status.views(names)

    def api_key_set(self, spec: d.ProviderSpec) -> bool:
        """Whether a key is available for the provider."""
        return resolve_api_key(spec, self._env) is not None
