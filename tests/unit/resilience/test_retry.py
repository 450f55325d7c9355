"""Retry decisions: full jitter, Retry-After, the deadline, attempt budgets, error choice."""

from __future__ import annotations

import email.utils
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider_router.domain import AttemptOutcome
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
    ProviderSilentError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from provider_router.resilience.breaker import BreakerOpenError
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.retry import (
    AttemptBudget,
    RetryPolicy,
    attempt_share,
    attempt_timeout,
    by_time_spent,
    next_delay,
    parse_retry_after,
    pick_error,
    severity,
)

POLICY = RetryPolicy()


class ZeroRandom(random.Random):
    """The unluckiest jitter: always the bottom of the range."""

    def random(self) -> float:
        return 0.0


def rate_limited(retry_after_s: float | None = None) -> ProviderRateLimitError:
    return ProviderRateLimitError("p", "HTTP 429", 429, retry_after_s=retry_after_s)


def server_error(retry_after_s: float | None = None) -> ProviderServerError:
    return ProviderServerError("p", "HTTP 503", 503, retry_after_s=retry_after_s)


# --- backoff ------------------------------------------------------------------------------------


def test_ceiling_doubles_from_base_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=0.1, factor=2.0, cap_s=1.0)
    assert [policy.ceiling(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.ceiling(100_000) == 1.0  # no OverflowError


def test_full_jitter_is_seeded_and_bounded() -> None:
    first = [POLICY.backoff(n, random.Random(7)) for n in range(8)]
    again = [POLICY.backoff(n, random.Random(7)) for n in range(8)]
    assert first == again
    rng = random.Random(42)
    draws = [POLICY.backoff(2, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 0.4 for d in draws)
    assert min(draws) < 0.04 and max(draws) > 0.36  # spread over the whole range


@given(n=st.integers(0, 200), seed=st.integers(0, 2**32),
       base=st.floats(0.0, 5.0), factor=st.floats(1.0, 10.0), cap=st.floats(0.0, 60.0))
def test_backoff_stays_within_zero_and_the_capped_exponential(
        n: int, seed: int, base: float, factor: float, cap: float) -> None:
    policy = RetryPolicy(base_s=base, factor=factor, cap_s=cap)
    delay = policy.backoff(n, random.Random(seed))
    try:
        bound = min(cap, base * factor**n)
    except OverflowError:
        bound = cap
    assert 0.0 <= delay <= bound + 1e-12


@given(index=st.integers(0, 5), seed=st.integers(0, 2**32),
       retry_after=st.none() | st.floats(0.0, 30.0), remaining=st.floats(0.0, 20.0),
       limited=st.booleans())
def test_a_delay_honours_retry_after_and_fits_the_deadline(
        index: int, seed: int, retry_after: float | None, remaining: float,
        limited: bool) -> None:
    error = rate_limited(retry_after) if limited else server_error(retry_after)
    deadline = Deadline(time.monotonic() + remaining)
    before = deadline.remaining()
    delay = next_delay(POLICY, index, error, deadline, random.Random(seed))
    if delay is None:
        return
    assert delay + POLICY.min_attempt_s <= before
    assert delay <= POLICY.max_wait_s
    assert delay >= (retry_after or 0.0)
    if limited:
        assert delay >= POLICY.rate_limit_floor_s > 0.0


# --- next_delay ---------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    server_error(), ProviderConnectionError("p", "reset"), ProviderProtocolError("p", "bad json"),
])
def test_retryable_errors_back_off(error: ProviderError) -> None:
    delay = next_delay(POLICY, 0, error, Deadline.after(30), random.Random(3))
    assert delay is not None and 0.0 <= delay <= 0.1


@pytest.mark.parametrize("error", [
    ProviderTimeoutError("p", "first_token", 5.0),
    ProviderAuthError("p", "HTTP 401", 401),
    ProviderRejectedError("p", "HTTP 400", 400),
    ContextLengthError("p", "too long", 400),
    ContentPolicyError("p", "flagged", 400),
    ProviderUnavailableError("p", "no key"),
    BreakerOpenError("p", "m", 3.0),
])
def test_non_retryable_errors_move_on(error: ProviderError) -> None:
    assert next_delay(POLICY, 0, error, Deadline.after(30), random.Random(3)) is None


def test_attempts_are_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(1)
    assert next_delay(policy, 0, server_error(), Deadline.after(30), rng) is not None
    assert next_delay(policy, 1, server_error(), Deadline.after(30), rng) is not None
    assert next_delay(policy, 2, server_error(), Deadline.after(30), rng) is None
    assert next_delay(RetryPolicy(max_attempts=1), 0, server_error(), Deadline.after(30),
                      rng) is None


def test_retry_after_is_never_shortened() -> None:
    delay = next_delay(POLICY, 0, rate_limited(2.0), Deadline.after(30), random.Random(1))
    assert delay == pytest.approx(2.0)
    delay = next_delay(POLICY, 0, server_error(1.5), Deadline.after(30), random.Random(1))
    assert delay == pytest.approx(1.5)


def test_a_retry_after_longer_than_the_deadline_moves_on() -> None:
    assert next_delay(POLICY, 0, rate_limited(5.0), Deadline.after(3), random.Random(1)) is None
    # The wait alone fits, but no attempt would fit after it.
    assert next_delay(POLICY, 0, rate_limited(2.8), Deadline.after(3), random.Random(1)) is None


def test_a_retry_after_longer_than_max_wait_moves_on_even_with_time_left() -> None:
    assert next_delay(POLICY, 0, rate_limited(20.0), Deadline.after(300),
                      random.Random(1)) is None


def test_a_backoff_that_does_not_fit_moves_on() -> None:
    assert next_delay(POLICY, 0, server_error(), Deadline.after(0.3), random.Random(1)) is None
    assert next_delay(POLICY, 0, server_error(), Deadline(time.monotonic() - 1),
                      random.Random(1)) is None


@pytest.mark.parametrize("retry_after", [None, 0.0])
def test_a_429_without_a_useful_retry_after_never_retries_at_once(
        retry_after: float | None) -> None:
    delay = next_delay(POLICY, 0, rate_limited(retry_after), Deadline.after(30), ZeroRandom())
    assert delay == POLICY.rate_limit_floor_s > 0.0
    # A 503 may retry immediately at the bottom of the jitter: that is full jitter.
    assert next_delay(POLICY, 0, server_error(), Deadline.after(30), ZeroRandom()) == 0.0


# --- Retry-After headers, parsed once by the connectors' parser --------------------------


def test_retry_after_seconds_http_date_and_ms_are_honoured() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    http_date = email.utils.formatdate(now + 4, usegmt=True)
    assert parse_retry_after({"retry-after": http_date}, now=now) == pytest.approx(4.0)
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"x-other": "1"}) is None
    for headers in ({"Retry-After": "2"}, {"retry-after": http_date}, {"retry-after-ms": "1500"}):
        hint = parse_retry_after(headers, now=now)
        delay = next_delay(POLICY, 0, rate_limited(hint), Deadline.after(30), random.Random(1))
        assert hint is not None and delay is not None and delay >= hint


# --- attempt_timeout ----------------------------------------------------------------------------


def deadline_in(seconds: float) -> Deadline:
    return Deadline(time.monotonic() + seconds)


@pytest.mark.parametrize(("left", "k", "total", "expected"), [
    (30.0, 0, None, 30.0),    # the last candidate gets everything
    (30.0, 3, None, 24.0),    # 2 s kept back for each of 3 fallbacks
    (5.0, 3, None, 1.25),     # tight budget: an equal share
    (1.0, 5, None, 0.5),      # never below the floor...
    (0.2, 5, None, 0.2),      # ...unless less than the floor is left
    (30.0, 0, 10.0, 10.0),    # the provider's own total timeout caps it
    (30.0, 3, 0.1, 0.1),      # even below the floor: it was configured explicitly
])
def test_attempt_timeout_splits_the_deadline(left: float, k: int, total: float | None,
                                             expected: float) -> None:
    assert attempt_timeout(deadline_in(left), k, total) == pytest.approx(expected, abs=0.05)


def test_attempt_timeout_is_zero_when_the_deadline_is_spent() -> None:
    assert attempt_timeout(Deadline(time.monotonic() - 1), 2, None) == 0.0


def test_attempt_budget_is_configurable() -> None:
    budget = AttemptBudget(reserve_s=5.0, floor_s=1.0)
    assert attempt_timeout(deadline_in(30.0), 2, None, budget) == pytest.approx(20.0, abs=0.05)


@given(left=st.floats(0.0, 600.0), k=st.integers(0, 20),
       total=st.none() | st.floats(0.0, 600.0))
def test_attempt_timeout_never_outlives_the_deadline(left: float, k: int,
                                                     total: float | None) -> None:
    deadline = deadline_in(left)
    timeout = attempt_timeout(deadline, k, total)
    assert 0.0 <= timeout <= left
    if total is not None:
        assert timeout <= total


@given(left=st.floats(0.0, 600.0), k=st.integers(-1, 20),
       total=st.none() | st.floats(0.0, 600.0))
def test_attempt_share_is_attempt_timeout_for_a_clock_reading(left: float, k: int,
                                                              total: float | None) -> None:
    # The dispatcher reads the clock once and places the attempt's deadline with the same
    # reading; the rule must be attempt_timeout's exactly.
    budget = AttemptBudget(reserve_s=1.5, floor_s=0.25)
    assert attempt_share(left, k, total, budget) == pytest.approx(
        attempt_timeout(deadline_in(left), k, total, budget), abs=0.01)


# --- pick_error ---------------------------------------------------------------------------------


CHAIN: list[ProviderError] = [
    rate_limited(3.0),
    ProviderTimeoutError("b", "total", 5.0),
    server_error(),
    BreakerOpenError("c", "m", 10.0),
]


def test_pick_first_and_last() -> None:
    assert pick_error(CHAIN, "first") is CHAIN[0]
    assert pick_error(CHAIN, "last") is CHAIN[-1]


def test_pick_most_severe() -> None:
    assert pick_error(CHAIN, "most_severe") is CHAIN[2]
    policy = ContentPolicyError("d", "flagged", 400)
    assert pick_error([*CHAIN, policy], "most_severe") is policy


def test_most_severe_ties_go_to_the_earliest() -> None:
    first, second = server_error(), server_error()
    assert pick_error([first, second], "most_severe") is first


def test_the_severity_order() -> None:
    ordered = [
        BreakerOpenError("p", "m"),
        rate_limited(),
        ProviderConnectionError("p", "reset"),
        ProviderTimeoutError("p", "total", 1.0),
        server_error(),
        ProviderAuthError("p", "HTTP 401", 401),
        ContextLengthError("p", "too long", 400),
    ]
    ranks = [severity(e) for e in ordered]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


def test_pick_error_needs_an_error() -> None:
    with pytest.raises(ValueError):
        pick_error([], "first")


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"factor": 0.5}, {"base_s": -1.0}])
def test_policy_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


# --- classification by time spent ----------------------------------------------------------


def test_a_close_after_a_long_silence_is_a_first_token_timeout() -> None:
    closed = ProviderConnectionError("p", "connection failed before a response (reset)")
    silent = by_time_spent(closed, 15.0, 2.0)
    assert isinstance(silent, ProviderSilentError)
    assert silent.outcome is AttemptOutcome.TIMEOUT and not silent.retryable
    assert silent.phase == "first_token"
    assert silent.message == ("p: no answer for 15s, then connection failed before a response "
                              "(reset) (counted as a first-token timeout)")
    assert silent.__cause__ is closed


def test_a_quick_close_stays_a_retryable_connection_error() -> None:
    closed = ProviderConnectionError("p", "connection failed before a response (reset)")
    assert by_time_spent(closed, 0.05, 2.0) is closed


@pytest.mark.parametrize("error", [
    ProviderServerError("p", "HTTP 503", status_code=503),
    ProviderRateLimitError("p", "HTTP 429", status_code=429),
    ProviderRejectedError("p", "HTTP 400", status_code=400),
])
def test_answers_with_a_status_keep_their_class(error: ProviderError) -> None:
    assert by_time_spent(error, 30.0, 2.0) is error
