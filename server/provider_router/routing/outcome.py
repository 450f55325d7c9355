"""What a chain ends with: the caller's answer, or the most informative error with every
attempt."""

from __future__ import annotations

import time

from provider_router import domain as d
from provider_router.errors import (
    DeadlineExceededError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitError,
    RateLimitedError,
    RouterError,
    UnavailableError,
)
from provider_router.resilience.breaker import BreakerOpenError
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.retry import pick_error
from provider_router.resilience.settings import ErrorPickMode
from provider_router.routing.dispatch import Chain
from provider_router.routing.pricing import cost_usd


def chat_response(target: d.RouteTarget, spec: d.ProviderSpec, result: d.ChatResult,
                  chain: Chain, decision: d.RouteDecision, started: float) -> d.ChatResponse:
    """The Chat answer of the target that gave `result` (`started`: time.perf_counter())."""
    return d.ChatResponse(
        provider=target.provider, model=result.model or target.model, result=result,
        cost_usd=cost_usd(spec.model(target.model), result.usage),
        latency_s=time.perf_counter() - started, attempts=tuple(chain.attempts),
        strategy=decision.strategy, rule=decision.rule)


def _rate_limited(chain: Chain) -> RateLimitedError | None:
    """RESOURCE_EXHAUSTED when every attempt was a rate limit (ours or the provider's)."""
    real = [e for e in chain.errors if not isinstance(e, BreakerOpenError)]
    if not all(isinstance(e, ProviderRateLimitError) for e in real):
        return None
    if not real and not chain.waits:
        return None
    hints = chain.waits + [e.retry_after_s for e in real if e.retry_after_s is not None]
    return RateLimitedError("every candidate is rate limited",
                            min(hints) if hints else None, tuple(chain.attempts))


def chain_failure(chain: Chain, deadline: Deadline, mode: ErrorPickMode) -> RouterError:
    """The error to return when no candidate answered."""
    attempts = tuple(chain.attempts)
    if deadline.expired():
        return DeadlineExceededError("deadline exceeded before any candidate answered",
                                     attempts=attempts)
    limited = _rate_limited(chain)
    if limited is not None:
        return limited
    real = [e for e in chain.errors if not isinstance(e, BreakerOpenError)]
    if not real:
        return UnavailableError("no candidate could take the call (breakers open or limits "
                                "reached)", attempts)
    picked: ProviderError = pick_error(real, mode)
    if picked.caller_error or isinstance(picked, ProviderAuthError):
        # The request's own fault, or our credentials: say so with the provider's reason.
        picked.attempts = attempts
        return picked
    return UnavailableError(f"every candidate failed; {picked.message}", attempts)
