"""ProviderBreakers: each pybreaker fact handled, the window, recovery, listeners, the ramp."""

from __future__ import annotations

import asyncio
import random

import pytest

from provider_router.domain import AttemptOutcome, BreakerState, ExclusionReason
from provider_router.errors import (
    ContentPolicyError,
    ContextLengthError,
    ProviderError,
    ProviderQuotaError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUnreachableError,
)
from provider_router.resilience.breaker import (
    TRIAL_ELSEWHERE_S,
    BreakerChange,
    BreakerConfig,
    BreakerOpenError,
    ProviderBreakers,
    Verdict,
    verdict_of,
)
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.retry import RetryPolicy, next_delay
from tests.unit.resilience.conftest import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def server_error() -> ProviderServerError:
    return ProviderServerError("p", "HTTP 503", status_code=503)


def make(clock: FakeClock, **config: object) -> ProviderBreakers:
    # A fixed open → half-open wait unless a test asks for the adaptive one.
    config.setdefault("reset_initial_s", config.get("reset_timeout_s", 30.0))
    return ProviderBreakers(BreakerConfig(**config), clock)  # type: ignore[arg-type]


async def fail(breakers: ProviderBreakers, error: BaseException, model: str = "m") -> None:
    with pytest.raises(type(error)), breakers.guard("p", model):
        await asyncio.sleep(0)
        raise error


async def succeed(breakers: ProviderBreakers, model: str = "m") -> None:
    with breakers.guard("p", model):
        await asyncio.sleep(0)


async def trip(breakers: ProviderBreakers, model: str = "m") -> None:
    for _ in range(breakers.config.fail_max):
        await fail(breakers, server_error(), model)
    assert breakers.state("p", model) is OPEN


# --- fact 1: coroutines are counted, and the provider's own error is what the caller sees ---


async def test_guard_counts_awaited_failures_and_opens_at_fail_max(clock: FakeClock) -> None:
    breakers = make(clock)
    for expected in (CLOSED, CLOSED, OPEN):
        # The tripping failure surfaces as the provider's error, not CircuitBreakerError.
        await fail(breakers, server_error())
        assert breakers.state("p", "m") is expected


async def test_an_open_breaker_skips_with_a_retry_hint(clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=30.0)
    await trip(breakers)
    clock.advance(10.0)
    assert not breakers.allows("p", "m")
    assert breakers.exclusion("p", "m") is ExclusionReason.BREAKER_OPEN
    with pytest.raises(BreakerOpenError) as caught:
        await succeed(breakers)
    error = caught.value
    assert isinstance(error, ProviderError)
    assert error.outcome is AttemptOutcome.SKIPPED
    assert error.retry_after_s == pytest.approx(20.0)
    assert next_delay(RetryPolicy(), 0, error, Deadline.after(60), random.Random(1)) is None


# --- fact 2: half-open admits exactly one trial ---------------------------------------------


async def test_half_open_admits_exactly_one_trial_and_closes_on_its_success(
        clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=30.0)
    await trip(breakers)
    clock.advance(30.0)
    assert breakers.allows("p", "m")
    release = asyncio.Event()

    async def trial() -> None:
        with breakers.guard("p", "m"):
            await release.wait()

    task = asyncio.create_task(trial())
    await asyncio.sleep(0)
    assert breakers.state("p", "m") is HALF_OPEN
    assert not breakers.allows("p", "m")
    with pytest.raises(BreakerOpenError) as caught:
        await succeed(breakers)
    assert caught.value.retry_after_s is None
    release.set()
    await task
    assert breakers.state("p", "m") is CLOSED
    assert breakers.allows("p", "m")


async def test_many_concurrent_calls_in_half_open_admit_one(clock: FakeClock) -> None:
    breakers = make(clock)
    await trip(breakers)
    clock.advance(30.0)
    release = asyncio.Event()
    admitted = 0

    async def call() -> None:
        nonlocal admitted
        with breakers.guard("p", "m"):
            admitted += 1
            await release.wait()

    tasks = [asyncio.create_task(call()) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert admitted == 1
    assert sum(isinstance(r, BreakerOpenError) for r in results) == 49


async def test_a_failed_trial_reopens_for_another_full_timeout(clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=30.0)
    await trip(breakers)
    clock.advance(31.0)
    await fail(breakers, server_error())
    assert breakers.state("p", "m") is OPEN
    clock.advance(29.0)
    assert not breakers.allows("p", "m")
    clock.advance(1.0)
    assert breakers.allows("p", "m")
    await succeed(breakers)
    assert breakers.state("p", "m") is CLOSED


# --- fact 3: caller errors neither open nor reset ----------------------------------------------


@pytest.mark.parametrize("caller_error", [
    ProviderRejectedError("p", "HTTP 400", 400),
    ContextLengthError("p", "too long", 400),
    ContentPolicyError("p", "flagged", 400),
])
async def test_caller_errors_neither_open_nor_reset(clock: FakeClock,
                                                     caller_error: ProviderError) -> None:
    breakers = make(clock, fail_max=3)
    await fail(breakers, server_error())
    await fail(breakers, server_error())
    for _ in range(5):
        await fail(breakers, caller_error)
    assert breakers.state("p", "m") is CLOSED
    await fail(breakers, server_error())  # still the third failure in a row: no reset happened
    assert breakers.state("p", "m") is OPEN


async def test_caller_errors_alone_never_open(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    for _ in range(10):
        await fail(breakers, ContentPolicyError("p", "flagged", 400))
    assert breakers.state("p", "m") is CLOSED


async def test_a_success_does_reset(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=3)
    await fail(breakers, server_error())
    await fail(breakers, server_error())
    await succeed(breakers)
    await fail(breakers, server_error())
    await fail(breakers, server_error())
    assert breakers.state("p", "m") is CLOSED


async def test_a_caller_error_as_the_trial_frees_the_slot_without_closing(
        clock: FakeClock) -> None:
    breakers = make(clock)
    await trip(breakers)
    clock.advance(30.0)
    await fail(breakers, ContextLengthError("p", "too long", 400))
    assert breakers.state("p", "m") is HALF_OPEN
    assert breakers.allows("p", "m")
    await succeed(breakers)
    assert breakers.state("p", "m") is CLOSED


# --- fact 4: cancellation is not counted --------------------------------------------------------


async def test_a_cancelled_call_is_not_a_failure(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)

    async def slow() -> None:
        with breakers.guard("p", "m"):
            await asyncio.sleep(10)

    for _ in range(3):
        task = asyncio.create_task(slow())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breakers.state("p", "m") is CLOSED


async def test_a_cancelled_trial_frees_the_slot(clock: FakeClock) -> None:
    breakers = make(clock)
    await trip(breakers)
    clock.advance(30.0)

    async def slow() -> None:
        with breakers.guard("p", "m"):
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0)
    assert not breakers.allows("p", "m")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breakers.state("p", "m") is HALF_OPEN
    assert breakers.allows("p", "m")


async def test_unavailable_providers_are_neutral(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    await fail(breakers, ProviderUnavailableError("p", "no api key"))
    assert breakers.state("p", "m") is CLOSED


@pytest.mark.parametrize(("error", "verdict"), [
    (None, Verdict.SUCCESS),
    (ProviderServerError("p", "503"), Verdict.FAILURE),
    (ProviderTimeoutError("p", "first_token", 5.0), Verdict.FAILURE),
    (RuntimeError("unmapped"), Verdict.FAILURE),
    (ContentPolicyError("p", "flagged"), Verdict.NEUTRAL),
    (BreakerOpenError("p", "m", 1.0), Verdict.NEUTRAL),
    (asyncio.CancelledError(), Verdict.NEUTRAL),
    (GeneratorExit(), Verdict.NEUTRAL),
])
def test_verdicts(error: BaseException | None, verdict: Verdict) -> None:
    assert verdict_of(error) is verdict


# --- the window and stale outcomes ----------------------------------------------------------


async def test_failures_older_than_the_window_do_not_count(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=3, window_s=60.0)
    for _ in range(6):
        await fail(breakers, server_error())
        clock.advance(31.0)  # at most two failures inside any 60 s window
    assert breakers.state("p", "m") is CLOSED
    await fail(breakers, server_error())
    clock.advance(1.0)
    await fail(breakers, server_error())
    assert breakers.state("p", "m") is OPEN


async def test_an_outcome_from_before_a_transition_is_ignored(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    release = asyncio.Event()

    async def slow_success() -> None:
        with breakers.guard("p", "m"):
            await release.wait()

    task = asyncio.create_task(slow_success())
    await asyncio.sleep(0)
    await fail(breakers, server_error())
    assert breakers.state("p", "m") is OPEN
    release.set()
    await task
    assert breakers.state("p", "m") is OPEN


async def test_a_failure_admitted_while_closed_is_ignored_once_the_breaker_cycled(
        clock: FakeClock) -> None:
    # Closed again, but in a later epoch: the shared closed permit of the first one is stale.
    breakers = make(clock, fail_max=1)
    release = asyncio.Event()

    async def slow_failure() -> None:
        with breakers.guard("p", "m"):
            await release.wait()
            raise server_error()

    task = asyncio.create_task(slow_failure())
    await asyncio.sleep(0)
    await trip(breakers)
    clock.advance(30.0)
    await succeed(breakers)
    assert breakers.state("p", "m") is CLOSED
    release.set()
    with pytest.raises(ProviderServerError):
        await task
    assert breakers.state("p", "m") is CLOSED


# --- listeners ----------------------------------------------------------------------------------


async def test_listeners_see_every_transition_in_order(clock: FakeClock) -> None:
    breakers = make(clock)
    seen: list[BreakerChange] = []
    stop = breakers.add_listener(seen.append)
    await trip(breakers)
    clock.advance(30.0)
    await succeed(breakers)
    assert [(c.old, c.new) for c in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN),
                                             (HALF_OPEN, CLOSED)]
    # Per-model keys by default: the model's breaker moved; the provider-level one did not.
    assert {(c.provider, c.model) for c in seen} == {("p", "m")}
    assert seen[1].at == clock.now
    stop()
    await trip(breakers)
    assert len(seen) == 3


async def test_a_failing_listener_does_not_break_the_call(clock: FakeClock,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    breakers = make(clock, fail_max=1)

    def broken(change: BreakerChange) -> None:
        raise RuntimeError("metrics down")

    breakers.add_listener(broken)
    await fail(breakers, server_error())
    assert breakers.state("p", "m") is OPEN
    assert "breaker listener" in caplog.text


async def test_each_transition_is_logged_once_and_an_opening_as_a_warning(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="provider_router")
    breakers = make(clock, fail_max=1, reset_timeout_s=5.0)
    await fail(breakers, server_error())
    clock.advance(5.0)
    await succeed(breakers)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.getMessage().startswith("breaker of")]
    assert lines == [("WARNING", "breaker of p/m: closed -> open"),
                     ("INFO", "breaker of p/m: open -> half_open"),
                     ("INFO", "breaker of p/m: half_open -> closed")]


# --- keys ---------------------------------------------------------------------------------------


async def test_per_provider_breakers_are_shared_by_models(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=2, per_model=False)
    await fail(breakers, server_error(), model="a")
    await fail(breakers, server_error(), model="b")
    assert breakers.state("p", "c") is OPEN
    assert breakers.state("p") is OPEN


async def test_per_model_breakers_are_separate_and_the_provider_shows_the_worst(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)  # per-model keys are the default
    await fail(breakers, server_error(), model="a")
    await succeed(breakers, model="b")
    assert breakers.state("p", "a") is OPEN
    assert breakers.state("p", "b") is CLOSED
    assert breakers.allows("p", "b")
    assert breakers.state("p") is OPEN
    assert breakers.state("other") is CLOSED


async def test_unknown_and_removed_providers_are_closed(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    assert breakers.allows("nobody", "m")
    assert breakers.admission_fraction("nobody", "m") == 1.0
    await fail(breakers, server_error())
    breakers.remove("p")
    assert breakers.state("p", "m") is CLOSED


# --- ramp ---------------------------------------------------------------------------------------


async def test_traffic_ramps_back_linearly_after_closing(clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=30.0, ramp_s=30.0, ramp_floor=0.1)
    assert breakers.admission_fraction("p", "m") == 1.0
    await trip(breakers)
    assert breakers.admission_fraction("p", "m") == 0.0
    clock.advance(30.0)
    assert breakers.admission_fraction("p", "m") == 1.0  # never starve the healing trial
    await succeed(breakers)
    assert breakers.admission_fraction("p", "m") == pytest.approx(0.1)
    clock.advance(15.0)
    assert breakers.admission_fraction("p", "m") == pytest.approx(0.55)
    assert breakers.admission_fraction("p", "m", now=clock.now + 15.0) == 1.0
    clock.advance(20.0)
    assert breakers.admission_fraction("p", "m") == 1.0


async def test_ramp_can_be_disabled(clock: FakeClock) -> None:
    breakers = make(clock, ramp_s=0.0)
    await trip(breakers)
    clock.advance(30.0)
    await succeed(breakers)
    assert breakers.admission_fraction("p", "m") == 1.0


@pytest.mark.parametrize("bad", [{"fail_max": 0}, {"window_s": 0.0}, {"ramp_floor": 0.0},
                                 {"reset_timeout_s": -1.0}])
def test_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**bad)  # type: ignore[arg-type]


async def test_the_planner_gate_reads_the_clock_only_for_a_breaker_not_closed(
        clock: FakeClock) -> None:
    reads: list[float] = []

    def counted() -> float:
        reads.append(clock())
        return clock()

    breakers = ProviderBreakers(BreakerConfig(fail_max=1, reset_timeout_s=30.0), counted)
    assert breakers.allows("p", "m")  # no breaker yet
    await succeed(breakers)
    reads.clear()
    assert breakers.allows("p", "m") and reads == []
    await fail(breakers, server_error())
    assert not breakers.allows("p", "m") and reads
    clock.advance(30.0)
    assert breakers.allows("p", "m")  # the trial is due


# --- hooks for shared breakers (state/breaker_sync.py) --------------------------------------


async def test_apply_adopts_a_remote_state_and_tells_listeners(clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=30.0)
    changes: list[BreakerChange] = []
    breakers.add_listener(changes.append)
    breakers.apply("p", "", OPEN, open_for_s=12.0)
    assert breakers.state("p") is OPEN
    assert not breakers.allows("p", "m")
    assert breakers.open_for("p", "") == pytest.approx(12.0)
    clock.advance(12.0)
    assert breakers.allows("p", "m")  # due for its trial after the remote remainder
    breakers.apply("p", "", CLOSED)
    assert breakers.state("p") is CLOSED
    assert [(c.old, c.new) for c in changes] == [(CLOSED, OPEN), (OPEN, CLOSED)]


async def test_the_trial_gate_decides_who_sends_the_trial(clock: FakeClock) -> None:
    breakers = make(clock, reset_timeout_s=5.0)
    holder = {"p": False}
    breakers.set_trial_gate(lambda provider, model: holder[provider])
    await trip(breakers)
    clock.advance(5.0)
    # Due, but another replica holds the trial: still skipped, with a short retry hint.
    assert not breakers.allows("p", "m")
    with pytest.raises(BreakerOpenError) as caught:
        await succeed(breakers)
    assert caught.value.retry_after_s == pytest.approx(TRIAL_ELSEWHERE_S)
    assert breakers.state("p") is OPEN
    holder["p"] = True
    assert breakers.allows("p", "m")
    await succeed(breakers)  # this replica's trial
    assert breakers.state("p") is CLOSED
    breakers.set_trial_gate(None)


# --- per-model keys with a provider-level breaker -----------------------------------------------


def unreachable() -> ProviderUnreachableError:
    return ProviderUnreachableError("p", "cannot connect to h:443: Connection refused")


async def test_a_sick_model_never_takes_the_providers_other_models_down(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=2)
    await trip(breakers, model="a")
    assert not breakers.allows("p", "a")
    assert breakers.allows("p", "b") and breakers.allows("p", "c")
    await succeed(breakers, model="b")
    assert breakers.state("p", "b") is CLOSED


async def test_connection_level_failures_open_the_provider_level_breaker_for_every_model(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=2)
    await fail(breakers, unreachable(), model="a")
    await fail(breakers, ProviderTimeoutError("p", "connect", 5.0), model="b")
    # No model is blamed for an unreachable host; every model is skipped all the same.
    assert breakers.state("p", "a") is CLOSED and breakers.state("p", "b") is CLOSED
    assert not breakers.allows("p", "a") and not breakers.allows("p", "z")
    assert breakers.exclusion("p", "z") is ExclusionReason.BREAKER_OPEN
    with pytest.raises(BreakerOpenError), breakers.guard("p", "z"):
        pass  # pragma: no cover - never admitted
    assert breakers.state("p") is OPEN


async def test_model_failures_never_count_for_the_provider_level_breaker(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    await fail(breakers, server_error(), model="a")
    await fail(breakers, ProviderTimeoutError("p", "first_token", 10.0), model="b")
    assert breakers.state("p", "a") is OPEN and breakers.state("p", "b") is OPEN
    # Model "c" passes: the provider-level breaker counted neither failure.
    assert breakers.allows("p", "c")


async def test_any_answer_closes_a_half_open_provider_level_breaker(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1, reset_timeout_s=5.0)
    await fail(breakers, unreachable(), model="a")
    clock.advance(5.0)
    # The trial reaches the host, whose model answers 503: reachable, so the provider-level
    # breaker closes while the model's own breaker counts the 503.
    await fail(breakers, server_error(), model="a")
    assert breakers.state("p", "a") is OPEN
    assert breakers.allows("p", "b")


def test_rate_limits_are_no_breaker_signal() -> None:
    assert verdict_of(ProviderRateLimitError("p", "HTTP 429", 429, 1.0)) is Verdict.NEUTRAL
    assert verdict_of(ProviderQuotaError("p", "HTTP 429", 429)) is Verdict.NEUTRAL


async def test_persistent_429s_never_open_any_breaker(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    for _ in range(5):
        await fail(breakers, ProviderRateLimitError("p", "HTTP 429", 429), model="a")
    assert breakers.state("p") is CLOSED


# --- adaptive half-open ------------------------------------------------------------------------


async def test_half_open_starts_short_and_backs_off_on_failed_trials_up_to_the_cap(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1, reset_initial_s=2.0, reset_timeout_s=10.0)
    await fail(breakers, server_error())
    waits = []
    for _ in range(5):
        waited = 0.0
        while not breakers.allows("p", "m"):
            clock.advance(0.5)
            waited += 0.5
        waits.append(waited)
        await fail(breakers, server_error())  # the trial fails: open again
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]


async def test_a_successful_trial_resets_the_back_off(clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1, reset_initial_s=1.0, reset_timeout_s=30.0)
    await fail(breakers, server_error())
    clock.advance(1.0)
    await fail(breakers, server_error())  # failed trial: the next wait is 2 s
    clock.advance(1.0)
    assert not breakers.allows("p", "m")
    clock.advance(1.0)
    await succeed(breakers)
    assert breakers.state("p", "m") is CLOSED
    await fail(breakers, server_error())  # a new outage starts short again
    clock.advance(1.0)
    assert breakers.allows("p", "m")


def test_reset_after_never_exceeds_the_configured_reset() -> None:
    config = BreakerConfig(reset_initial_s=60.0, reset_timeout_s=30.0)
    assert config.reset_after(0) == 30.0
    assert BreakerConfig().reset_after(0) == 2.0
    assert BreakerConfig().reset_after(100) == 30.0


async def test_the_provider_is_out_only_when_unreachable_or_every_model_is_open(
        clock: FakeClock) -> None:
    breakers = make(clock, fail_max=1)
    await fail(breakers, server_error(), model="a")
    assert not breakers.provider_open("p", ("a", "b"))
    await fail(breakers, server_error(), model="b")
    assert breakers.provider_open("p", ("a", "b"))
    other = make(clock, fail_max=1)
    await fail(other, unreachable(), model="a")
    assert other.provider_open("p", ("a", "b"))
    per_provider = make(clock, fail_max=1, per_model=False)
    await fail(per_provider, server_error(), model="a")
    assert per_provider.provider_open("p", ("a", "b"))
