"""The planner's CandidateGate: what the resilience layer knows about each provider now.

A candidate is excluded when it cannot be used on this host (missing key, binary or env var),
when its breaker is open (or a half-open trial is already running), when it is cooling down
after a 429 or a spent quota, or when its rate limits have no headroom. Concurrency and
probe health are checked by the planner from the stats.
"""

from __future__ import annotations

from collections.abc import Mapping

from provider_router.connectors.factory import availability
from provider_router.domain import ExclusionReason, ProviderSpec
from provider_router.resilience.breaker import ProviderBreakers
from provider_router.resilience.cooldown import CooldownBook
from provider_router.resilience.ratelimit import RateLimiter
from provider_router.routing.registry import Registry


class RouterGate:
    """Availability, breaker and rate-limit checks for the planner, cheap and lock-free."""

    def __init__(self, registry: Registry, env: Mapping[str, str], breakers: ProviderBreakers,
                 limiter: RateLimiter, cooldowns: CooldownBook | None = None) -> None:
        self._registry = registry
        self._env = env
        self._breakers = breakers
        self._limiter = limiter
        self._cooldowns = cooldowns or CooldownBook()
        # The book's own map, read here so a book with nothing cooling costs one test.
        self._cooling = self._cooldowns.until
        # Cached per spec object: a replaced spec is a new object and is checked again.
        self._availability: dict[str, tuple[ProviderSpec, bool, str]] = {}

    def _checked(self, spec: ProviderSpec) -> tuple[ProviderSpec, bool, str]:
        cached = self._availability.get(spec.name)
        if cached is None or cached[0] is not spec:
            ok, why = availability(spec, self._env)
            cached = (spec, ok, why)
            self._availability[spec.name] = cached
        return cached

    def available(self, spec: ProviderSpec) -> tuple[bool, str]:
        """Whether the provider can be used on this host, and why not."""
        cached = self._checked(spec)
        return cached[1], cached[2]

    def exclusion(self, provider: str, model: str) -> ExclusionReason | None:
        """Why a candidate cannot take a call right now, if it cannot."""
        spec = self._registry.snapshot().providers.get(provider)
        if spec is None or not self._checked(spec)[1]:
            return ExclusionReason.UNAVAILABLE
        if not self._breakers.allows(provider, model):
            return ExclusionReason.BREAKER_OPEN
        if self._cooling and self._cooldowns.cooling(provider, model):
            return ExclusionReason.COOLDOWN
        if (spec.rate_limit_rpm or spec.rate_limit_tpm) and not self._limiter.has_headroom(spec):
            return ExclusionReason.RATE_LIMITED
        return None
