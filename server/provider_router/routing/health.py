"""Active and passive provider health, published to stats and the gRPC health service.

Active: every `[resilience] health_interval` seconds each enabled, available provider's
connector is probed (`probe()`: listing models, no tokens spent); a failed or slow probe marks
it UNHEALTHY, which the planner excludes until a probe succeeds again. Passive: real traffic
feeds the stats (error rate) and the breakers; a breaker opening or closing is published at
once. Each provider's state is served under `provider_router.provider.<name>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from provider_router.domain import HealthState, ProviderSpec
from provider_router.resilience.breaker import BreakerChange, ProviderBreakers
from provider_router.routing.gate import RouterGate
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.registry import Registry
from provider_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

Publish = Callable[[str, bool], Awaitable[None]]
"""Publishes one provider's serving state (the gRPC health service)."""


class HealthMonitor:
    """Probes providers on an interval and publishes health changes."""

    def __init__(self, registry: Registry, pool: ConnectorPool, gate: RouterGate,
                 breakers: ProviderBreakers, metrics: Metrics, publish: Publish,
                 interval_s: float, probe_timeout_s: float) -> None:
        self._registry = registry
        self._pool = pool
        self._gate = gate
        self._breakers = breakers
        self._metrics = metrics
        self._publish_health = publish
        self._interval_s = interval_s
        self._probe_timeout_s = probe_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # Listeners may fire on another thread (a registry writer); work is handed to this loop.
        self._loop = asyncio.get_running_loop()
        breakers.add_listener(self._breaker_changed)
        registry.add_listener(self._provider_changed)

    def _serving(self, spec: ProviderSpec) -> bool:
        return (spec.enabled and self._gate.available(spec)[0]
                and not self._breakers.provider_open(spec.name,
                                                     tuple(m.name for m in spec.models))
                and self._registry.stats.health(spec.name) is not HealthState.UNHEALTHY)

    def _publish(self, name: str, serving: bool) -> Awaitable[None]:
        """Publish to the health service, and to the provider_router_provider_up gauge."""
        self._metrics.provider_up.labels(name).set(1.0 if serving else 0.0)
        return self._publish_health(name, serving)

    def _breaker_changed(self, change: BreakerChange) -> None:
        # Per provider, read back from all of its breakers (model or provider-level), not
        # from this one change: open while the provider-level one or every model's is open.
        self._metrics.set_breaker(change.provider, self._breakers.state(change.provider))
        spec = self._registry.snapshot().providers.get(change.provider)
        if spec is not None:
            self._spawn(self._publish(spec.name, self._serving(spec)))

    def _provider_changed(self, old: ProviderSpec | None, new: ProviderSpec | None) -> None:
        self._metrics.providers.set(len(self._registry.snapshot().providers))
        if new is not None:
            self._metrics.set_breaker(new.name, self._breakers.state(new.name))
            self._spawn(self._publish(new.name, self._serving(new)))
        elif old is not None:
            self._spawn(self._publish_health(old.name, False))
            self._metrics.forget_provider(old.name)

    def _spawn(self, work: Awaitable[None]) -> None:
        def start() -> None:
            task = self._loop.create_task(_await(work))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        self._loop.call_soon_threadsafe(start)

    async def publish_all(self) -> None:
        """Publish every provider's current state (at start and after changes)."""
        for spec in self._registry.snapshot().providers.values():
            self._metrics.set_breaker(spec.name, self._breakers.state(spec.name))
            await self._publish(spec.name, self._serving(spec))

    async def probe(self, spec: ProviderSpec) -> bool:
        """Probe one provider now and record the result."""
        connector = self._pool.get(spec)
        try:
            result = await asyncio.wait_for(connector.probe(), self._probe_timeout_s)
            ok, detail = result.ok, result.detail
        except TimeoutError:
            ok, detail = False, f"probe timed out after {self._probe_timeout_s:g}s"
        except Exception as error:  # a probe must never take the monitor down
            ok, detail = False, f"probe failed: {type(error).__name__}"
        if not ok:
            log.warning("health probe of %s failed: %s", spec.name, detail)
        health = HealthState.HEALTHY if ok else HealthState.UNHEALTHY
        self._registry.stats.set_health(spec.name, health, time.time())
        await self._publish(spec.name, self._serving(spec))
        return ok

    async def probe_all(self) -> None:
        """One round of probes over every enabled, available provider."""
        specs = [s for s in self._registry.snapshot().providers.values()
                 if s.enabled and self._gate.available(s)[0]]
        await asyncio.gather(*(self.probe(s) for s in specs))

    async def _probe_forever(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        """Start probing on the interval (no-op when the interval is 0)."""
        if self._interval_s > 0 and self._task is None:
            self._task = self._loop.create_task(self._probe_forever())

    async def stop(self) -> None:
        """Stop probing and wait for pending publications."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


async def _await(work: Awaitable[None]) -> None:
    await work
