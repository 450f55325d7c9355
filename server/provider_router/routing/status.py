"""ListProviders' view: spec + live stats + availability + health, composed per provider."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Protocol

from provider_router.domain import (
    BreakerState,
    HealthState,
    ProviderKind,
    ProviderSpec,
    ProviderStatus,
    ProviderView,
)
from provider_router.errors import UnknownProviderError
from provider_router.resilience.breaker import ProviderBreakers
from provider_router.routing.registry import Registry

# Passive health from real traffic: above this error rate a provider is DEGRADED.
DEGRADED_ERROR_RATE = 0.5


class Availability(Protocol):
    """Whether a provider can be used on this host."""

    def available(self, spec: ProviderSpec) -> tuple[bool, str]:
        """(usable, reason when not)."""
        ...


class ProviderStatusView:
    """Builds ProviderStatus values from the registry's stats and the availability check."""

    def __init__(self, registry: Registry, availability: Availability,
                 breakers: ProviderBreakers) -> None:
        self._registry = registry
        self._availability = availability
        self._breakers = breakers

    def _status(self, spec: ProviderSpec, now: float) -> ProviderStatus:
        stats = self._registry.stats.view(spec.name, now, spec.max_concurrent)
        ok, why = self._availability.available(spec)
        return stats.as_status(breaker_state=self._breakers.state(spec.name), available=ok,
                               unavailable_reason=why, is_mock=spec.kind is ProviderKind.MOCK)

    def status(self, name: str) -> ProviderStatus:
        """One provider's status (UnknownProviderError when not registered)."""
        spec = self._registry.snapshot().providers.get(name)
        if spec is None:
            raise UnknownProviderError(name)
        status = self._status(spec, time.time())
        return _with_health(status, self._out(spec))

    def _out(self, spec: ProviderSpec) -> bool:
        return self._breakers.provider_open(spec.name, tuple(m.name for m in spec.models))

    def views(self, names: tuple[str, ...]) -> list[ProviderView]:
        """Every provider, or the named ones (UnknownProviderError for a missing name)."""
        providers = self._registry.snapshot().providers
        for name in names:
            if name not in providers:
                raise UnknownProviderError(name)
        now = time.time()
        # Each provider once, however often it was named (100,000 copies of one name must
        # not make 100,000 views).
        chosen = sorted(set(names) or providers)
        return [ProviderView(providers[n], _with_health(self._status(providers[n], now),
                                                        self._out(providers[n])))
                for n in chosen]


def _with_health(status: ProviderStatus, out: bool) -> ProviderStatus:
    """Probe results when there are any, else what real traffic says. `out`: the provider
    as a whole is cut off by its breakers; a breaker open for some of its models only (the
    status shows the worst breaker) makes it DEGRADED."""
    if not status.available or out:
        return replace(status, health=HealthState.UNHEALTHY)
    if status.breaker_state is BreakerState.OPEN:
        return replace(status, health=HealthState.DEGRADED)
    if status.health is not HealthState.UNKNOWN or status.request_count == 0:
        return status
    degraded = status.error_rate >= DEGRADED_ERROR_RATE
    return replace(status, health=HealthState.DEGRADED if degraded else HealthState.HEALTHY)
