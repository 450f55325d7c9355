"""Same-provider retries, the per-attempt share of the deadline, and the error to report.

The decisions are pure functions of the policy, the classified error, the deadline and an
injected `random.Random`, so the router's failover loop stays a loop and tests need no sleeps:

    delay = next_delay(policy, attempt_index, error, deadline, rng)
    None  -> move on to the next candidate
    float -> sleep that long, then retry the same provider

Retry hints: connectors parse `Retry-After` / `retry-after-ms` once, in `map_error`, into
`ProviderError.retry_after_s`; `parse_retry_after` is re-exported here from the connectors'
error table so there is one parser, not two.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from provider_router.connectors.errormap import parse_retry_after
from provider_router.domain import AttemptOutcome
from provider_router.errors import ProviderError, ProviderSilentError
from provider_router.resilience.deadline import Deadline

__all__ = (
    "AttemptBudget",
    "ErrorPick",
    "RetryPolicy",
    "attempt_share",
    "attempt_timeout",
    "by_time_spent",
    "next_delay",
    "parse_retry_after",
    "pick_error",
    "severity",
)


def grown(base: float, factor: float, times: int, cap: float) -> float:
    """base·factorⁿ for n = `times` (0 when negative), at most `cap` (also on overflow)."""
    try:
        value = base * math.pow(factor, max(0, times))
    except OverflowError:
        return cap
    return min(cap, value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently the same provider is retried."""

    max_attempts: int = 3
    base_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 5.0
    # Without Retry-After a 429 still waits this long: never a tight loop on a rate limit.
    rate_limit_floor_s: float = 0.5
    # A longer wait (Retry-After, usually) moves on to the next candidate instead of sleeping.
    max_wait_s: float = 10.0
    # What a retry needs after its delay to be worth starting at all.
    min_attempt_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.factor < 1.0:
            raise ValueError("factor must be at least 1")
        if min(self.base_s, self.cap_s, self.rate_limit_floor_s, self.max_wait_s,
               self.min_attempt_s) < 0:
            raise ValueError("durations must not be negative")

    def ceiling(self, attempt_index: int) -> float:
        """Backoff bound after attempt `attempt_index` (0-based): base·factorⁿ, at most cap_s."""
        return grown(self.base_s, self.factor, attempt_index, self.cap_s)

    def backoff(self, attempt_index: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, ceiling], so retrying clients spread out."""
        return rng.uniform(0.0, self.ceiling(attempt_index))


def next_delay(policy: RetryPolicy, attempt_index: int, error: ProviderError,
               deadline: Deadline, rng: random.Random) -> float | None:
    """Seconds to wait before retrying the same provider, or None to move to the next one.

    `attempt_index` is the 0-based index of the attempt on this provider that just failed.
    None when the error is not retryable (caller errors, timeouts, auth), attempts are
    exhausted, the wait exceeds `max_wait_s`, or the wait plus `min_attempt_s` does not fit
    in what is left of the deadline. Retry-After is a floor, never shortened.
    """
    if not error.retryable or error.caller_error:
        return None
    if attempt_index + 1 >= policy.max_attempts:
        return None
    delay = max(policy.backoff(attempt_index, rng), _floor(policy, error))
    if delay > policy.max_wait_s or delay + policy.min_attempt_s > deadline.remaining():
        return None
    return delay


def _floor(policy: RetryPolicy, error: ProviderError) -> float:
    floor = error.retry_after_s or 0.0
    if error.outcome is AttemptOutcome.RATE_LIMITED:
        # "Retry-After: 0" or none at all must not turn into a tight loop.
        floor = max(floor, policy.rate_limit_floor_s)
    return floor


def by_time_spent(error: ProviderError, spent_s: float, slow_s: float) -> ProviderError:
    """The error reclassified by how long it took to arrive, before any answer reached us.

    A connection closed (or a stream cut) after `slow_s` or more of silence is the provider
    holding the call, not a network blip: it becomes a first-token timeout (not retried on
    the same target), so a silent provider never eats the deadline once per retry. Errors
    with an HTTP status keep their class; the dispatcher does not retry them either when
    they took that long.
    """
    if (spent_s < slow_s or error.status_code or not error.retryable or error.caller_error
            or error.outcome is AttemptOutcome.RATE_LIMITED):
        return error
    cause = error.message.removeprefix(f"{error.provider}: ")
    silent = ProviderSilentError(error.provider, spent_s, cause)
    silent.__cause__ = error
    return silent


@dataclass(frozen=True, slots=True)
class AttemptBudget:
    """How the remaining deadline is shared between this attempt and the candidates after it."""

    reserve_s: float = 2.0
    floor_s: float = 0.5


_DEFAULT_BUDGET = AttemptBudget()


def attempt_timeout(deadline: Deadline, remaining_candidates: int,
                    per_attempt_total: float | None, budget: AttemptBudget | None = None
                    ) -> float:
    """This attempt's timeout: what is left minus a reserve for each later candidate.

    Rule, with `left` the remaining deadline and `k` the candidates still after this one:
    `max(left / (k + 1), left - k * reserve_s)`, raised to `floor_s`, then capped by the
    provider's own `per_attempt_total` and by `left`. The first attempt usually answers, so
    it gets most of the budget; the equal share keeps room when the budget is already tight.
    """
    return attempt_share(deadline.remaining(), remaining_candidates, per_attempt_total,
                         budget or _DEFAULT_BUDGET)


def attempt_share(left: float, remaining_candidates: int, per_attempt_total: float | None,
                  budget: AttemptBudget) -> float:
    """`attempt_timeout` with `left` seconds remaining, for a caller that has read the clock
    already (and needs the same reading to place the attempt's own deadline)."""
    k = max(0, remaining_candidates)
    share = max(left / (k + 1), left - k * budget.reserve_s, budget.floor_s)
    if per_attempt_total is not None:
        share = min(share, per_attempt_total)
    return min(share, left)


ErrorPick = Literal["first", "last", "most_severe"]
"""Which failed attempt's error the caller sees when every candidate failed."""

# Most severe last. A caller error is definitive about the request (INVALID_ARGUMENT says what
# to fix); bad credentials need an operator; then the provider's own failures, most telling
# first; a rate limit is transient and carries its Retry-After; a skip never reached anyone.
_SEVERITY_ORDER = (
    AttemptOutcome.SUCCESS,
    AttemptOutcome.CANCELLED,
    AttemptOutcome.SKIPPED,
    AttemptOutcome.RATE_LIMITED,
    AttemptOutcome.CONNECTION_FAILED,
    AttemptOutcome.TIMEOUT,
    AttemptOutcome.PROVIDER_ERROR,
    AttemptOutcome.STREAM_BROKEN,
    AttemptOutcome.AUTH_FAILED,
    AttemptOutcome.REJECTED,
)


def severity(error: ProviderError) -> int:
    """Rank for `most_severe`: higher is more severe (the order is explained above)."""
    if error.caller_error:
        return len(_SEVERITY_ORDER)
    return _SEVERITY_ORDER.index(error.outcome)


def pick_error(errors: Sequence[ProviderError], mode: ErrorPick) -> ProviderError:
    """The most informative error of a failed chain; ties in `most_severe` go to the earliest."""
    if not errors:
        raise ValueError("pick_error needs at least one error")
    if mode == "first":
        return errors[0]
    if mode == "last":
        return errors[-1]
    return max(errors, key=severity)
