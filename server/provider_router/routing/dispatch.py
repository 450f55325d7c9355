"""One target of the failover chain: admission, breaker, same-provider retries, bookkeeping.

For each attempt: concurrency and rate-limit admission → the provider's breaker → the
connector call with a share of the deadline (`attempt_timeout`) → classify → either retry the
same provider after `next_delay`, or give up on this target so the router moves on. Every
attempt, skipped or made, is recorded once in the Chain, in stats and in metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import TracebackType

from provider_router import domain as d
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    DeadlineExceededError,
    ProviderError,
    ProviderQuotaError,
)
from provider_router.resilience.breaker import BreakerOpenError, ProviderBreakers
from provider_router.resilience.cooldown import CooldownBook
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import RateLimiter, SharedSlots
from provider_router.resilience.retry import attempt_share, by_time_spent, next_delay
from provider_router.resilience.settings import ResilienceSettings
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.registry import Registry
from provider_router.routing.stats import StatsBook
from provider_router.telemetry.metrics import Metrics
from provider_router.tokens import estimate_prompt_tokens


@dataclass(slots=True)
class Chain:
    """What happened along one request's failover chain so far."""

    # The request as the caller sent it and the completion size it is charged at: what
    # `tokens` is estimated from.
    request: d.ChatRequest | None = field(default=None, repr=False)
    completion_tokens: int = 0
    attempts: list[d.Attempt] = field(default_factory=list)
    errors: list[ProviderError] = field(default_factory=list)
    # Seconds until each rate-limited candidate has capacity again.
    waits: list[float] = field(default_factory=list)
    # After a context-length rejection only models with a larger (known) window are tried.
    min_context_window: int = 0
    _tokens: int | None = field(default=None, init=False, repr=False)

    @property
    def tokens(self) -> int:
        """Estimated tokens of the call (prompt + completion), which rate limits charge.

        Estimated on first use: only a provider with rate limits asks, and the estimate
        walks every message.
        """
        if self._tokens is None:
            prompt = estimate_prompt_tokens(self.request.messages) if self.request else 0
            self._tokens = prompt + self.completion_tokens
        return self._tokens


class BrokenStreamError(Exception):
    """A stream failed after this attempt delivered deltas (carries the provider error)."""

    def __init__(self, error: ProviderError, delivered: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.delivered = delivered


@dataclass(frozen=True, slots=True)
class Resilience:
    """The resilience parts the dispatcher uses, built once by the composition root."""

    breakers: ProviderBreakers
    limiter: RateLimiter
    settings: ResilienceSettings
    rng: random.Random
    cooldowns: CooldownBook = field(default_factory=CooldownBook)
    # max_concurrent over every replica (state shared through Redis); None: per replica.
    slots: SharedSlots | None = None


def _skip(target: d.RouteTarget, reason: str, error: str = "") -> d.Attempt:
    return d.Attempt(target.provider, target.model, d.AttemptOutcome.SKIPPED, 0.0,
                     error=error, reason=reason)


def _fits_context(spec: d.ProviderSpec, model: str, chain: Chain) -> bool:
    """After a context-length error, only a model with a larger known window is worth it."""
    if not chain.min_context_window:
        return True
    found = spec.model(model)
    return found is None or found.context_window == 0 or (
        found.context_window >= chain.min_context_window)


def _limited(spec: d.ProviderSpec) -> bool:
    """Whether attempts at the provider need admission (Dispatcher._admitted). Without rate
    or concurrency limits admission always succeeds and changes nothing, so it is skipped."""
    return bool(spec.rate_limit_rpm or spec.rate_limit_tpm or spec.max_concurrent)


def _carry_attempts(error: ProviderError, chain: Chain) -> None:
    """Give an error that ends the request as it is every attempt made so far, so its status
    details list them as for any other failed chain."""
    error.attempts = tuple(chain.attempts)


class Dispatcher:
    """Runs the attempts against one target for Chat and StreamChat."""

    def __init__(self, registry: Registry, pool: ConnectorPool, resilience: Resilience,
                 metrics: Metrics) -> None:
        self._stats = registry.stats
        self._pool = pool
        self._r = resilience
        self._metrics = metrics

    # --- bookkeeping ----------------------------------------------------------------------

    def _record(self, chain: Chain, attempt: d.Attempt) -> None:
        chain.attempts.append(attempt)
        # The outcome is a StrEnum member, equal to (and hashing as) its value, so it is the
        # label as is; `.value` would cost a call into the enum module on every attempt.
        self._metrics.attempts.labels(attempt.provider, attempt.model, attempt.outcome).inc()

    def _failed(self, chain: Chain, spec: d.ProviderSpec, target: d.RouteTarget,
                started: float, error: ProviderError, broken: bool = False) -> None:
        duration = time.perf_counter() - started
        # A caller error says nothing about the provider's health.
        self._stats.finish(target.provider, duration, ok=error.caller_error,
                           error="" if error.caller_error else error.message)
        chain.errors.append(error)
        if isinstance(error, ContextLengthError):
            model = spec.model(target.model)
            window = model.context_window if model is not None else 0
            chain.min_context_window = max(chain.min_context_window, window + 1)
        outcome = d.AttemptOutcome.STREAM_BROKEN if broken else error.outcome
        self._record(chain, d.Attempt(target.provider, target.model, outcome, duration,
                                      error.status_code, error.message, error.reason))

    def _succeeded(self, chain: Chain, target: d.RouteTarget, started: float,
                   ttft_s: float | None = None) -> None:
        duration = time.perf_counter() - started
        self._stats.finish(target.provider, duration, ok=True, ttft_s=ttft_s)
        self._record(chain, d.Attempt(target.provider, target.model, d.AttemptOutcome.SUCCESS,
                                      duration))

    def _in_flight(self, spec: d.ProviderSpec) -> _InFlight:
        slots = self._r.slots
        if slots is not None and spec.max_concurrent:
            return _InFlightSlot(self._stats, spec.name, slots)
        return _InFlight(self._stats, spec.name)

    def _unslot(self, spec: d.ProviderSpec) -> None:
        """Give back a global slot whose call never started (its breaker refused it)."""
        slots = self._r.slots
        if slots is not None and spec.max_concurrent:
            slots.leave(spec.name)

    # --- admission and policy ---------------------------------------------------------------

    def usable(self, spec: d.ProviderSpec | None, target: d.RouteTarget, chain: Chain,
               deadline: Deadline) -> d.ProviderSpec | None:
        """The target's current spec if it is worth an attempt (still registered, and large
        enough after a context-length error); raises once the deadline has passed."""
        if spec is None or not _fits_context(spec, target.model, chain):
            return None
        if deadline.expired():
            raise DeadlineExceededError(attempts=tuple(chain.attempts))
        return spec

    async def admit(self, spec: d.ProviderSpec, target: d.RouteTarget, chain: Chain) -> bool:
        """Take rate-limit capacity for the call, or record why the target is skipped."""
        if not (spec.rate_limit_rpm or spec.rate_limit_tpm):
            return True
        wait = await self._r.limiter.try_acquire(spec, chain.tokens)
        if wait > 0:
            chain.waits.append(wait)
            self._record(chain, _skip(target, "RATE_LIMITED", f"local limit: {wait:.2f}s"))
            return False
        return True

    def _concurrency_ok(self, spec: d.ProviderSpec, target: d.RouteTarget, chain: Chain) -> bool:
        if spec.max_concurrent and self._stats.in_flight(spec.name) >= spec.max_concurrent:
            self._record(chain, _skip(target, "CONCURRENCY_LIMIT"))
            return False
        return True

    async def _admitted(self, spec: d.ProviderSpec, target: d.RouteTarget, chain: Chain
                        ) -> bool:
        """Rate-limit capacity, then a concurrency slot, for one attempt: every retry is a
        request the provider sees, so each one takes its own token."""
        slots = self._r.slots
        if slots is not None and spec.max_concurrent:
            return await self._admitted_shared(spec, target, chain, slots)
        if not await self.admit(spec, target, chain):
            return False
        # No await between this check and the in-flight increment: the slot is ours.
        if self._concurrency_ok(spec, target, chain):
            return True
        await self._released(spec, chain)
        return False

    async def _admitted_shared(self, spec: d.ProviderSpec, target: d.RouteTarget,
                               chain: Chain, slots: SharedSlots) -> bool:
        """`_admitted` against max_concurrent over every replica: the slot is asked for
        first, so it shares one round trip to the state backend with the rate-limit take."""
        entering = slots.enter(spec.name, spec.max_concurrent)
        try:
            admitted = await self.admit(spec, target, chain)
        except BaseException:
            if await entering:  # answered within the state backend's budget
                slots.leave(spec.name)
            raise
        if await entering:
            if admitted:
                return True
            slots.leave(spec.name)
        elif admitted:
            self._record(chain, _skip(target, "CONCURRENCY_LIMIT", "global limit"))
            await self._released(spec, chain)
        return False

    def stops_chain(self, error: ProviderError) -> bool:
        """Whether an error ends the whole request: the request itself is at fault."""
        if isinstance(error, ContextLengthError):
            return False  # a larger-context fallback may take it
        if isinstance(error, ContentPolicyError):
            return not self._r.settings.content_policy_failover
        return error.caller_error

    def _attempt_deadline(self, deadline: Deadline, spec: d.ProviderSpec,
                          remaining: int) -> Deadline:
        # One clock reading for both the share (retry.attempt_timeout) and where it ends.
        now = time.monotonic()
        expires_at = deadline.expires_at
        share = attempt_share(max(0.0, expires_at - now), remaining, spec.timeouts.total,
                              self._r.settings.budget)
        return Deadline(min(expires_at, now + share))

    def _by_time(self, error: ProviderError, started: float) -> ProviderError:
        """The error as classified by the time it took (retry.by_time_spent)."""
        return by_time_spent(error, time.perf_counter() - started,
                             self._r.settings.slow_failure_s)

    async def _retry_delay(self, attempt_index: int, error: ProviderError, deadline: Deadline,
                           target: d.RouteTarget, started: float, remaining: int) -> bool:
        """Sleep before retrying the same provider; False means move on.

        A rate limit cools the target (resilience/cooldown.py) and moves on while later
        candidates remain; only the last one waits out its Retry-After here. A failure that
        took `slow_failure` or longer is not retried: it would cost that time again.
        """
        if error.outcome is d.AttemptOutcome.RATE_LIMITED:
            self._r.cooldowns.start(target.provider, target.model, error.retry_after_s,
                                    quota=isinstance(error, ProviderQuotaError))
            if remaining:
                return False
        elif time.perf_counter() - started >= self._r.settings.slow_failure_s:
            return False
        delay = next_delay(self._r.settings.retry, attempt_index, error, deadline, self._r.rng)
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True

    async def _released(self, spec: d.ProviderSpec, chain: Chain) -> None:
        if spec.rate_limit_rpm or spec.rate_limit_tpm:
            await self._r.limiter.refund(spec, chain.tokens)

    # --- unary ------------------------------------------------------------------------------

    async def chat(self, spec: d.ProviderSpec, target: d.RouteTarget, request: d.ChatRequest,
                   deadline: Deadline, remaining: int, chain: Chain) -> d.ChatResult | None:
        """The target's answer, or None to move on; raises errors that end the request."""
        provider_request = d.ProviderRequest(request, target.model)
        limited = _limited(spec)
        for index in itertools.count():
            if limited and not await self._admitted(spec, target, chain):
                return None
            started = time.perf_counter()
            try:
                with self._r.breakers.guard(target.provider, target.model), \
                        self._in_flight(spec), self._pool.lease(spec) as connector:
                    result = await connector.chat(
                        provider_request, self._attempt_deadline(deadline, spec, remaining))
            except BreakerOpenError as error:
                self._record(chain, _skip(target, error.reason, error.message))
                self._unslot(spec)
                await self._released(spec, chain)
                return None
            except ProviderError as error:
                failed = self._by_time(error, started)
                self._failed(chain, spec, target, started, failed)
                if self.stops_chain(failed):
                    _carry_attempts(failed, chain)
                    raise
                if not await self._retry_delay(index, failed, deadline, target, started,
                                               remaining):
                    return None
                continue
            self._succeeded(chain, target, started)
            if spec.rate_limit_tpm:  # here, not in _settle: skips a coroutine per success
                await self._settle(spec, chain, result.usage)
            return result
        return None  # pragma: no cover - the loop only exits by return or raise

    async def _settle(self, spec: d.ProviderSpec, chain: Chain, usage: d.Usage) -> None:
        """Correct the tpm bucket by the tokens actually used (providers with a tpm limit)."""
        await self._r.limiter.adjust(spec, chain.tokens, usage.total_tokens)

    # --- streaming --------------------------------------------------------------------------

    async def stream(self, spec: d.ProviderSpec, target: d.RouteTarget,
                     request: d.ChatRequest, deadline: Deadline, remaining: int, chain: Chain
                     ) -> AsyncGenerator[d.StreamEvent, None]:
        """The target's stream. Ends after StreamFinish, or without one when it gave up
        before any delta (move on); raises BrokenStreamError when it broke after deltas."""
        provider_request = d.ProviderRequest(request, target.model)
        limited = _limited(spec)
        for index in itertools.count():
            if limited and not await self._admitted(spec, target, chain):
                return
            progress = _Progress(time.perf_counter())
            attempt_deadline = self._attempt_deadline(deadline, spec, remaining)
            finish: d.StreamFinish | None = None
            try:
                # One attempt inside the breaker. Inline, not a generator of its own: a layer
                # costs a resumption per event of every stream.
                with self._r.breakers.guard(target.provider, target.model), \
                        self._in_flight(spec), self._pool.lease(spec) as connector:
                    # aclosing: a cancelled caller closes the upstream request at once.
                    async with contextlib.aclosing(
                            connector.stream(provider_request, attempt_deadline)) as events:
                        async for event in events:
                            if isinstance(event, d.StreamFinish):
                                # Recorded before the router builds its end event.
                                self._succeeded(chain, target, progress.started,
                                                progress.ttft_s())
                                finish = event
                                break
                            progress.delta()
                            yield event
            except BreakerOpenError as error:
                self._record(chain, _skip(target, error.reason, error.message))
                self._unslot(spec)
                await self._released(spec, chain)
                return
            except ProviderError as error:
                if await self._retry_stream(chain, spec, target, index, error, progress,
                                            deadline, remaining):
                    continue
                return
            if finish is None:
                self._cut(chain, spec, target, progress)
                return
            # Yielded only once the breaker and the in-flight count have the success: a caller
            # that leaves on the finish event (GeneratorExit here) must not undo either.
            yield finish
            return

    async def _retry_stream(self, chain: Chain, spec: d.ProviderSpec, target: d.RouteTarget,
                            index: int, error: ProviderError, progress: _Progress,
                            deadline: Deadline, remaining: int) -> bool:
        """Record a failed stream attempt; True to retry the same provider, False to move on.
        Raises when deltas were already delivered or the request itself is at fault."""
        if not progress.deltas:
            error = self._by_time(error, progress.started)
        self._failed(chain, spec, target, progress.started, error, broken=progress.deltas > 0)
        if progress.deltas:
            raise BrokenStreamError(error, progress.deltas) from error
        if self.stops_chain(error):
            _carry_attempts(error, chain)
            raise error
        return await self._retry_delay(index, error, deadline, target, progress.started,
                                       remaining)

    def _cut(self, chain: Chain, spec: d.ProviderSpec, target: d.RouteTarget,
             progress: _Progress) -> None:
        """The connector ended without its finish event: never a clean end."""
        cut = ProviderError(target.provider, "stream ended without a finish event")
        self._failed(chain, spec, target, progress.started, cut, broken=progress.deltas > 0)
        if progress.deltas:
            raise BrokenStreamError(cut, progress.deltas)


class _InFlight:
    """Counts a call in flight. Cancellation is neither success nor failure: only the
    in-flight count drops (a verdict drops it otherwise, in StatsBook.finish)."""

    __slots__ = ("_provider", "_stats")

    def __init__(self, stats: StatsBook, provider: str) -> None:
        self._stats = stats
        self._provider = provider

    def __enter__(self) -> None:
        self._stats.start(self._provider)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self._stats.abandon(self._provider)


class _InFlightSlot(_InFlight):
    """`_InFlight` for a call that also holds a global concurrency slot: gives it back."""

    __slots__ = ("_slots",)

    def __init__(self, stats: StatsBook, provider: str, slots: SharedSlots) -> None:
        super().__init__(stats, provider)
        self._slots = slots

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        super().__exit__(kind, error, traceback)
        self._slots.leave(self._provider)


class _Progress:
    """How far one stream attempt got."""

    __slots__ = ("deltas", "first_at", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.deltas = 0
        self.first_at: float | None = None

    def delta(self) -> None:
        """Count a delta."""
        self.deltas += 1
        if self.first_at is None:
            self.first_at = time.perf_counter()

    def ttft_s(self) -> float | None:
        """Time to the first delta of this attempt."""
        return None if self.first_at is None else self.first_at - self.started
