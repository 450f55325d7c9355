"""The router: the failover loop over the planner's targets, and the admin pass-throughs.

Chat and StreamChat spend one deadline across the whole chain. Streams fail over freely
until the first delta has reached the caller; after that a failure ends the stream with
StreamBrokenError (UNAVAILABLE, saying how many deltas were delivered), never a clean finish
on a truncated answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from provider_router import domain as d
from provider_router.connectors.factory import availability, resolve_api_key
from provider_router.errors import (
    ContextLengthError,
    DeadlineExceededError,
    InvalidRequestError,
    ProviderError,
    StreamBrokenError,
    UnavailableError,
)
from provider_router.resilience.deadline import Deadline
from provider_router.routing.planner import Planner
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.pricing import cost_usd
from provider_router.routing.registry import Registry
from provider_router.routing.status import ProviderStatusView
from provider_router.validation import validate_provider_spec

log = logging.getLogger(__name__)


class AvailabilityGate:
    """Answers the planner's CandidateGate: unavailable or at max_concurrent."""

    def __init__(self, registry: Registry, env: Mapping[str, str]) -> None:
        self._registry = registry
        self._env = env
        self._cache: dict[str, tuple[d.ProviderSpec, bool, str]] = {}

    def available(self, spec: d.ProviderSpec) -> tuple[bool, str]:
        """Whether the provider can be used on this host, cached per spec."""
        cached = self._cache.get(spec.name)
        if cached is None or cached[0] is not spec:
            ok, why = availability(spec, self._env)
            cached = (spec, ok, why)
            self._cache[spec.name] = cached
        return cached[1], cached[2]

    def exclusion(self, provider: str, model: str) -> d.ExclusionReason | None:
        """Why a candidate cannot take a call right now, if it cannot."""
        spec = self._registry.snapshot().providers.get(provider)
        if spec is None:
            return d.ExclusionReason.UNAVAILABLE
        if not self.available(spec)[0]:
            return d.ExclusionReason.UNAVAILABLE
        if spec.max_concurrent and self._registry.stats.in_flight(provider) >= spec.max_concurrent:
            return d.ExclusionReason.CONCURRENCY_LIMIT
        return None


def _attempt(target: d.RouteTarget, started: float, error: ProviderError | None = None,
             outcome: d.AttemptOutcome | None = None) -> d.Attempt:
    duration = time.perf_counter() - started
    if error is None:
        return d.Attempt(target.provider, target.model, outcome or d.AttemptOutcome.SUCCESS,
                         duration)
    return d.Attempt(target.provider, target.model, outcome or error.outcome, duration,
                     status_code=error.status_code, error=error.message, reason=error.reason)


class Router:
    """Routes, calls, fails over; the servicer's RouterPort."""

    def __init__(self, registry: Registry, planner: Planner, pool: ConnectorPool,
                 gate: AvailabilityGate, env: Mapping[str, str]) -> None:
        self._registry = registry
        self._planner = planner
        self._pool = pool
        self._gate = gate
        self._env = env
        self._status = ProviderStatusView(registry, gate)

    # --- routing ------------------------------------------------------------------------

    def route(self, request: d.ChatRequest, at: float | None) -> d.RouteDecision:
        """Decide without calling any provider."""
        now = datetime.fromtimestamp(at, UTC) if at is not None else None
        return self._planner.decide(request, now)

    def _spec(self, target: d.RouteTarget) -> d.ProviderSpec | None:
        return self._registry.snapshot().providers.get(target.provider)

    def _cost(self, spec: d.ProviderSpec, model: str, usage: d.Usage) -> float | None:
        return cost_usd(spec.model(model), usage)

    async def chat(self, request: d.ChatRequest, deadline: Deadline) -> d.ChatResponse:
        """Route and complete, failing over along the chain within the deadline."""
        started = time.perf_counter()
        decision = self._planner.decide(request)
        attempts: list[d.Attempt] = []
        for target in decision.targets:
            spec = self._spec(target)
            if spec is None:
                continue  # unregistered since the decision
            if deadline.expired():
                raise DeadlineExceededError(attempts=tuple(attempts))
            result = await self._chat_once(spec, target, request, deadline, attempts)
            if result is not None:
                return d.ChatResponse(
                    provider=target.provider, model=result.model or target.model, result=result,
                    cost_usd=self._cost(spec, target.model, result.usage),
                    latency_s=time.perf_counter() - started, attempts=tuple(attempts),
                    strategy=decision.strategy, rule=decision.rule)
        raise self._exhausted(attempts, deadline)

    async def _chat_once(self, spec: d.ProviderSpec, target: d.RouteTarget,
                         request: d.ChatRequest, deadline: Deadline,
                         attempts: list[d.Attempt]) -> d.ChatResult | None:
        stats = self._registry.stats
        started = time.perf_counter()
        stats.start(spec.name)
        try:
            async with self._pool.lease(spec) as connector:
                result = await connector.chat(d.ProviderRequest(request, target.model), deadline)
        except ProviderError as error:
            self._failed(spec.name, started, error, target, attempts)
            if error.caller_error and not isinstance(error, ContextLengthError):
                raise  # the request's own fault: another provider would reject it too
            return None
        except asyncio.CancelledError:
            stats.finish(spec.name, time.perf_counter() - started, ok=True)
            raise
        stats.finish(spec.name, time.perf_counter() - started, ok=True)
        attempts.append(_attempt(target, started))
        return result

    def _failed(self, name: str, started: float, error: ProviderError, target: d.RouteTarget,
                attempts: list[d.Attempt], outcome: d.AttemptOutcome | None = None) -> None:
        # A caller error says nothing about the provider's health.
        self._registry.stats.finish(name, time.perf_counter() - started, ok=error.caller_error,
                                    error="" if error.caller_error else error.message)
        attempts.append(_attempt(target, started, error, outcome))
        log.warning("attempt on %s/%s failed: %s", target.provider, target.model, error.reason)

    @staticmethod
    def _exhausted(attempts: list[d.Attempt], deadline: Deadline) -> Exception:
        if deadline.expired():
            return DeadlineExceededError(attempts=tuple(attempts))
        summary = "; ".join(f"{a.provider}/{a.model}: {a.reason or a.outcome}" for a in attempts)
        return UnavailableError(f"every candidate failed ({summary or 'none callable'})",
                                tuple(attempts))

    async def stream(self, request: d.ChatRequest, deadline: Deadline
                     ) -> AsyncIterator[d.RouterStreamEvent]:
        """Route and stream; fail over only until the first delta reaches the caller."""
        started = time.perf_counter()
        decision = self._planner.decide(request)
        attempts: list[d.Attempt] = []
        run = _StreamRun(started)
        for target in decision.targets:
            spec = self._spec(target)
            if spec is None:
                continue
            if deadline.expired():
                raise DeadlineExceededError(attempts=tuple(attempts))
            async for event in self._stream_once(spec, target, request, deadline, attempts, run,
                                                 decision):
                yield event
            if run.finished:
                return
        raise self._exhausted(attempts, deadline)

    async def _stream_once(self, spec: d.ProviderSpec, target: d.RouteTarget,
                           request: d.ChatRequest, deadline: Deadline, attempts: list[d.Attempt],
                           run: _StreamRun, decision: d.RouteDecision
                           ) -> AsyncIterator[d.RouterStreamEvent]:
        stats = self._registry.stats
        started = time.perf_counter()
        stats.start(spec.name)
        try:
            async with self._pool.lease(spec) as connector:
                async for event in connector.stream(d.ProviderRequest(request, target.model),
                                                    deadline):
                    if not run.started:
                        run.started = True
                        yield d.StreamStarted(target.provider, target.model, decision.strategy,
                                              decision.rule)
                    if isinstance(event, d.StreamFinish):
                        stats.finish(spec.name, time.perf_counter() - started, ok=True,
                                     ttft_s=run.ttft_s(started))
                        attempts.append(_attempt(target, started))
                        run.finished = True
                        yield self._ended(spec, target, event, attempts, run)
                        return
                    run.mark_delta()
                    yield event
        except ProviderError as error:
            broken = run.delivered > 0
            self._failed(spec.name, started, error, target, attempts,
                         d.AttemptOutcome.STREAM_BROKEN if broken else None)
            if broken:
                raise StreamBrokenError(
                    f"stream from {target.provider}/{target.model} broke after {run.delivered} "
                    f"deltas: {error.message}", run.delivered, tuple(attempts)) from error
            if error.caller_error and not isinstance(error, ContextLengthError):
                raise
        except asyncio.CancelledError:
            stats.finish(spec.name, time.perf_counter() - started, ok=True)
            raise

    def _ended(self, spec: d.ProviderSpec, target: d.RouteTarget, finish: d.StreamFinish,
               attempts: list[d.Attempt], run: _StreamRun) -> d.StreamEnded:
        return d.StreamEnded(
            provider=target.provider, model=finish.model or target.model,
            finish_reason=finish.finish_reason, usage=finish.usage,
            cost_usd=self._cost(spec, target.model, finish.usage), attempts=tuple(attempts),
            latency_s=time.perf_counter() - run.started_at,
            time_to_first_token_s=(run.first_delta_at or time.perf_counter()) - run.started_at)

    # --- admin --------------------------------------------------------------------------

    async def register(self, spec: d.ProviderSpec, validate_only: bool) -> d.RegisterOutcome:
        """Add or replace a provider (or only validate it)."""
        if not validate_only:
            return await self._registry.register(spec)
        violations = validate_provider_spec(spec)
        if violations:
            raise InvalidRequestError("invalid provider spec", violations)
        current = self._registry.snapshot().providers.get(spec.name)
        return d.RegisterOutcome(spec, created=current is None, changed=current != spec)

    async def unregister(self, name: str) -> d.ProviderSpec:
        """Remove a provider; its connector closes when its calls finish."""
        spec = await self._registry.unregister(name)
        self._pool.retire(name)
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


class _StreamRun:
    """Progress of one StreamChat across attempts."""

    __slots__ = ("delivered", "finished", "first_delta_at", "started", "started_at")

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.started = False
        self.finished = False
        self.delivered = 0
        self.first_delta_at: float | None = None

    def mark_delta(self) -> None:
        """A delta reached the caller."""
        self.delivered += 1
        if self.first_delta_at is None:
            self.first_delta_at = time.perf_counter()

    def ttft_s(self, attempt_started: float) -> float | None:
        """Time to first token of the current attempt, if a delta arrived."""
        return None if self.first_delta_at is None else self.first_delta_at - attempt_started
