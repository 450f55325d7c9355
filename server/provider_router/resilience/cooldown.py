"""Cooldowns: a rate-limited target (provider+model) is routed around until its wait is over.

A 429 or a spent quota says "not now" about one model at one provider, not that the provider
is broken, so it never counts against a circuit breaker. It puts that target into a
cooldown instead: for the provider's `Retry-After` when it sent one, else for `default_s`,
doubled for each 429 that follows within the previous cooldown's length again (a persistent
limit backs off), and always capped by `max_s`. A quota error without Retry-After cools
for `max_s` at once: a spent quota does not come back in seconds. The planner's gate
excludes a cooling target with EXCLUSION_REASON_COOLDOWN; when every candidate is cooling,
the caller gets RESOURCE_EXHAUSTED with the wait until the first one is back.

The book lives on the event loop's thread (the planner and the dispatcher both run there);
readers take no lock, and an empty book costs one truthiness test per candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from provider_router.resilience.retry import grown

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds on a monotonic clock; injected so tests never sleep."""


@dataclass(frozen=True, slots=True)
class CooldownConfig:
    """How long a rate-limited target is left alone."""

    default_s: float = 1.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.default_s < 0 or self.max_s < 0:
            raise ValueError("cooldown durations must not be negative")


@dataclass(frozen=True, slots=True)
class _Entry:
    until: float
    length: float
    streak: int


class CooldownBook:
    """The targets cooling down now: (provider, model) → when each may be tried again."""

    __slots__ = ("_clock", "_config", "_entries", "until")

    def __init__(self, config: CooldownConfig | None = None, clock: Clock = time.monotonic
                 ) -> None:
        self._config = config or CooldownConfig()
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        # (provider, model) → monotonic time the cooldown ends; read lock-free by the gate.
        self.until: dict[tuple[str, str], float] = {}

    @property
    def config(self) -> CooldownConfig:
        """The configuration the book applies."""
        return self._config

    def start(self, provider: str, model: str, retry_after_s: float | None,
              quota: bool = False) -> float:
        """Cool the target after a rate-limit signal; returns the cooldown's length."""
        now = self._clock()
        key = (provider, model)
        previous = self._entries.get(key)
        streak = 0
        if previous is not None and now < previous.until + previous.length:
            streak = previous.streak + 1  # limited again soon after the last cooldown
        length = self._length(retry_after_s, quota, streak)
        self._entries[key] = _Entry(now + length, length, streak)
        self.until[key] = now + length
        # One line per cooldown: a cooling target is routed around, so this is not per call.
        log.info("cooldown of %s/%s for %.3g s (%s)", provider, model, length,
                 "quota" if quota else "retry-after" if retry_after_s else "rate limited")
        return length

    def _length(self, retry_after_s: float | None, quota: bool, streak: int) -> float:
        config = self._config
        if retry_after_s is not None and retry_after_s > 0:
            return min(retry_after_s, config.max_s)
        if quota:
            return config.max_s
        return grown(config.default_s, 2.0, streak, config.max_s)

    def remaining(self, provider: str, model: str, now: float | None = None) -> float:
        """Seconds until the target may be tried again; 0.0 when it is not cooling."""
        until = self.until.get((provider, model))
        if until is None:
            return 0.0
        return max(0.0, until - (self._clock() if now is None else now))

    def cooling(self, provider: str, model: str) -> bool:
        """Whether the target is cooling down now (cheap when nothing is)."""
        until = self.until
        if not until:
            return False
        key = (provider, model)
        ends = until.get(key)
        if ends is None:
            return False
        if ends > self._clock():
            return True
        # Over: dropped, so a book with nothing cooling is empty again (the cheap case).
        del until[key]
        return False

    def forget(self, provider: str) -> None:
        """Drop every cooldown of a provider (it was unregistered)."""
        for key in [k for k in self._entries if k[0] == provider]:
            del self._entries[key]
            self.until.pop(key, None)
