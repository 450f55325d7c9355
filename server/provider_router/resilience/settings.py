"""The `[resilience]` config section: breakers, retries, budgets, streams and health checks.

Keys (durations in seconds; every key overridable as PROVIDER_ROUTER_RESILIENCE_<KEY>):

| key | default | meaning |
|---|---|---|
| breaker_fail_max | 3 | failures within breaker_window that open a breaker |
| breaker_window | 60 | failures older than this are forgotten |
| breaker_reset_initial | 2 | open → half-open (one trial) after this; doubled per failed trial |
| breaker_reset_timeout | 30 | the longest open → half-open wait (the doubling's cap) |
| breaker_per_model | true | per provider+model, plus a provider-level one (connection failures) |
| cooldown | 1 | a 429 without Retry-After cools its provider+model this long (doubling) |
| cooldown_max | 60 | caps every cooldown; a spent quota without Retry-After cools this long |
| slow_failure | 2 | a failure this late with no answer yet is not retried on the same target |
| ramp | 30 | after a breaker closes, share rises from ramp_floor to 1 over this (0 off) |
| ramp_floor | 0.1 | the share right after closing |
| retry_max_attempts | 3 | attempts on the same provider, first included |
| retry_base, retry_factor, retry_cap | 0.1, 2, 5 | full-jitter exponential backoff |
| rate_limit_floor | 0.5 | a 429 without Retry-After still waits this long |
| max_retry_wait | 10 | a longer Retry-After moves on to the next candidate |
| min_attempt | 0.5 | a retry needs this much deadline left after its delay |
| attempt_reserve, attempt_floor | 2, 0.5 | per-attempt deadline share (retry.attempt_timeout) |
| error_pick | "most_severe" | error reported when all failed: first, last, most_severe |
| content_policy_failover | false | a content-policy rejection tries the next candidate |
| wait_for_capacity | false | all rate limited: wait within the deadline, else RESOURCE_EXHAUSTED |
| stream_recovery | "restart" | a stream broken mid-answer: continue (prefill), restart, or fail |
| health_interval | 30 | seconds between active probes (0 = off) |
| probe_timeout | 5 | a probe slower than this fails |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from provider_router.config_values import Table, boolean, choice, number
from provider_router.resilience.breaker import BreakerConfig
from provider_router.resilience.cooldown import CooldownConfig
from provider_router.resilience.retry import AttemptBudget, RetryPolicy

StreamRecovery = Literal["continue", "restart", "fail"]
ErrorPickMode = Literal["first", "last", "most_severe"]


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    """Everything the failover loop and the health checker are tuned by."""

    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    # A failure this long after the call started, before any answer, is not retried on the
    # same target: it would eat that time again.
    slow_failure_s: float = 2.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: AttemptBudget = field(default_factory=AttemptBudget)
    error_pick: ErrorPickMode = "most_severe"
    content_policy_failover: bool = False
    wait_for_capacity: bool = False
    stream_recovery: StreamRecovery = "restart"
    health_interval_s: float = 30.0
    probe_timeout_s: float = 5.0


def parse_resilience_settings(raw: Mapping[str, object]) -> ResilienceSettings:
    """The `[resilience]` table (possibly empty) → ResilienceSettings, or ConfigError."""
    t = Table("resilience", raw)
    b, r, g = BreakerConfig(), RetryPolicy(), AttemptBudget()
    breaker = BreakerConfig(
        fail_max=int(number(t, "breaker_fail_max", b.fail_max, low=1, integer=True)),
        window_s=number(t, "breaker_window", b.window_s, low=0.001),
        reset_timeout_s=number(t, "breaker_reset_timeout", b.reset_timeout_s, low=0.001),
        reset_initial_s=number(t, "breaker_reset_initial", b.reset_initial_s, low=0.001),
        per_model=boolean(t, "breaker_per_model", b.per_model),
        ramp_s=number(t, "ramp", b.ramp_s, low=0.0),
        ramp_floor=number(t, "ramp_floor", b.ramp_floor, low=0.0, high=1.0),
    )
    retry = RetryPolicy(
        max_attempts=int(number(t, "retry_max_attempts", r.max_attempts, low=1, high=20,
                                integer=True)),
        base_s=number(t, "retry_base", r.base_s, low=0.0),
        factor=number(t, "retry_factor", r.factor, low=1.0),
        cap_s=number(t, "retry_cap", r.cap_s, low=0.0),
        rate_limit_floor_s=number(t, "rate_limit_floor", r.rate_limit_floor_s, low=0.0),
        max_wait_s=number(t, "max_retry_wait", r.max_wait_s, low=0.0),
        min_attempt_s=number(t, "min_attempt", r.min_attempt_s, low=0.0),
    )
    budget = AttemptBudget(reserve_s=number(t, "attempt_reserve", g.reserve_s, low=0.0),
                           floor_s=number(t, "attempt_floor", g.floor_s, low=0.0))
    c = CooldownConfig()
    cooldown = CooldownConfig(default_s=number(t, "cooldown", c.default_s, low=0.0),
                              max_s=number(t, "cooldown_max", c.max_s, low=0.0))
    settings = ResilienceSettings(
        breaker=breaker, retry=retry, budget=budget, cooldown=cooldown,
        slow_failure_s=number(t, "slow_failure", 2.0, low=0.0),
        error_pick=choice(t, "error_pick", "most_severe",  # type: ignore[arg-type]
                          ("first", "last", "most_severe")),
        wait_for_capacity=boolean(t, "wait_for_capacity", False),
        content_policy_failover=boolean(t, "content_policy_failover", False),
        stream_recovery=choice(t, "stream_recovery", "restart",  # type: ignore[arg-type]
                               ("continue", "restart", "fail")),
        health_interval_s=number(t, "health_interval", 30.0, low=0.0),
        probe_timeout_s=number(t, "probe_timeout", 5.0, low=0.001),
    )
    t.done()
    return settings
