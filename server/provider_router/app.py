"""The composition root: builds config → state → registry → connectors → router → server.

Nothing else constructs these objects. `create_app` binds but does not start, so tests run
the real server in-process on port 0; `serve` runs it until SIGTERM/SIGINT and drains.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace.export import SpanExporter

from provider_router.api.health import SERVICE_NAME, HealthReporter
from provider_router.api.interceptors import AuthInterceptor, Observer, TenantKeys
from provider_router.api.ports import bind, health_only_server
from provider_router.api.servicer import RouterServicer
from provider_router.api.tls import CertificateReloader
from provider_router.autoregister import providers_from_env
from provider_router.cache.base import CacheBackend
from provider_router.cache.memory import MemoryCache
from provider_router.cache.open import open_cache
from provider_router.config import Config
from provider_router.connectors.egress import EgressGuard, EgressPolicy
from provider_router.connectors.factory import create_connector, resolve_api_key
from provider_router.connectors.traced import traced_factory
from provider_router.domain import ProviderSpec
from provider_router.errors import ConfigError
from provider_router.gc_pacer import GcPacer
from provider_router.resilience.breaker import ProviderBreakers
from provider_router.resilience.cooldown import CooldownBook
from provider_router.resilience.ratelimit import MemoryBucketStore, RateLimiter
from provider_router.routing.cached_router import CachingRouter
from provider_router.routing.dispatch import Resilience
from provider_router.routing.gate import RouterGate
from provider_router.routing.health import HealthMonitor
from provider_router.routing.key_policy import KeyReferencePolicy
from provider_router.routing.planner import Planner
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.register_safety import RegisterSafety
from provider_router.routing.registry import Registry
from provider_router.routing.router import Router
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.status import ProviderStatusView
from provider_router.routing.tenancy import TenantRouter
from provider_router.routing.traced import TracedPlanner
from provider_router.state.base import StateStore
from provider_router.state.factory import open_state_store
from provider_router.state.outage_spend import OutageTolerantSpendStore
from provider_router.state.redis_cache import RedisCache
from provider_router.state.redis_link import RedisLink
from provider_router.state.redis_spend import RedisSpendStore
from provider_router.state.shared import SharedState
from provider_router.state.spend import MemorySpendStore, SpendStore
from provider_router.state.urls import is_redis_url
from provider_router.telemetry.access import CallLog, LineWriter
from provider_router.telemetry.loop_lag import LoopLagProbe
from provider_router.telemetry.metrics import Metrics
from provider_router.telemetry.tracing import Tracing, tracing_from_env
from provider_router.v1 import router_pb2

log = logging.getLogger(__name__)

# Keepalive and queue limits a production gRPC service wants; defaults are too loose. The
# message size limits come from [server] max_message_bytes (server_options).
SERVER_OPTIONS = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 1),
    # grpc.aio takes new calls from the core one at a time, so a burst of new streams waits
    # in the core's queue; past its defaults (1,000, hard limit 3,000) the core cancels
    # calls outright (measured: 1,600 of 5,000 streams opened in 2.5 s came back CANCELLED).
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
)


def server_options(max_message_bytes: int) -> tuple[tuple[str, int], ...]:
    """SERVER_OPTIONS plus the message size limits: a larger request is refused by gRPC
    itself with RESOURCE_EXHAUSTED before any of our code sees it."""
    return (*SERVER_OPTIONS, ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes))


def _api_keys(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(k.strip() for k in env.get(name, "").split(",") if k.strip())


def with_default_target(routing: RoutingSettings, specs: tuple[ProviderSpec, ...]
                        ) -> RoutingSettings:
    """Routing settings whose default is the highest-priority provider's first model, when
    the config names no default (so an empty `model` works out of the box)."""
    if routing.default_provider or not specs:
        return routing
    first = max(specs, key=lambda s: s.priority)
    model = first.models[0].name if first.models else ""
    return replace(routing, default_provider=first.name, default_model=model)


class SecretIndex:
    """Every secret value the process knows, for the log redaction filter.

    The list is rebuilt only when the registry publishes a new snapshot: the filter reads it
    for every log record, and resolving each provider's key per record would make a log
    line cost O(providers) (1,000 providers, a failure storm: a lot of wasted CPU).
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.registry: Registry | None = None
        self._snapshot: object = None
        self._secrets: tuple[str, ...] = ()

    def __call__(self) -> Iterator[str]:
        """Yield the secrets of registered providers (inline keys and env-referenced ones)."""
        if self.registry is None:
            return iter(())
        snapshot = self.registry.snapshot()
        if snapshot is not self._snapshot:
            keys = (resolve_api_key(spec, self._env) for spec in snapshot.providers.values())
            self._secrets = tuple(key.reveal() for key in keys if key is not None)
            self._snapshot = snapshot
        return iter(self._secrets)


@dataclass
class App:
    """A built server and everything it owns."""

    config: Config
    server: grpc.aio.Server
    port: int
    health: HealthReporter
    router: Router | TenantRouter
    registry: Registry
    pool: ConnectorPool
    store: StateStore
    metrics: Metrics
    monitor: HealthMonitor
    lag_probe: LoopLagProbe
    gc_pacer: GcPacer
    tls: CertificateReloader | None = None
    health_server: grpc.aio.Server | None = None
    health_port: int = 0
    cache: CacheBackend | None = None
    spend: SpendStore | None = None
    link: RedisLink | None = None
    """The process's one connection to Redis ([state] url = redis://...), else None."""
    shared: SharedState | None = None
    """Limits, breakers and stats shared with the other replicas (Redis only)."""
    calls: CallLog | None = None
    tracing: Tracing | None = None
    stopped: bool = False

    async def start(self) -> None:
        """Start serving and report SERVING."""
        await self.server.start()
        if self.shared is not None:
            self.shared.start()
        if self.health_server is not None:
            await self.health_server.start()
        if self.tls is not None:
            self.tls.start()
        self.lag_probe.start()
        await self.monitor.publish_all()
        self.monitor.start()
        await self.health.serving()
        await self.health.state_backend(self.link is None or self.link.up)
        log.info("serving on port %d (%d providers, pid %d)", self.port,
                 len(self.registry.snapshot().providers), os.getpid())

    async def shutdown(self, drain_delay_s: float | None = None, grace_s: float | None = None
                       ) -> None:
        """NOT_SERVING at once, wait for load balancers to notice, then let calls finish."""
        if self.stopped:
            return
        self.stopped = True
        server = self.config.server
        await self.health.draining()
        delay = server.drain_delay_s if drain_delay_s is None else drain_delay_s
        log.info("draining: NOT_SERVING for %.1fs, then up to %.1fs for in-flight calls",
                 delay, server.grace_s if grace_s is None else grace_s)
        await asyncio.sleep(delay)
        await self.server.stop(server.grace_s if grace_s is None else grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.tls is not None:
            await self.tls.stop()
        await self.monitor.stop()
        self.lag_probe.stop()
        self.gc_pacer.stop()
        await self.pool.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.spend is not None:
            await self.spend.aclose()
        await self.store.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        if self.link is not None:
            await self.link.aclose()
        # Blocks until the exposition thread's loop notices (up to half a second).
        await asyncio.to_thread(self.metrics.close)
        if self.calls is not None:
            await asyncio.to_thread(self.calls.close)  # the last access lines
        if self.tracing is not None:
            # Flushes the batch exporter's queue: blocking, so off the event loop.
            await asyncio.to_thread(self.tracing.shutdown)
        log.info("stopped")


async def create_app(config: Config, env: Mapping[str, str], listen: str | None = None,
                     secrets: SecretIndex | None = None,
                     span_exporter: SpanExporter | None = None) -> App:
    """Build the whole service from config, bound to `listen` but not started.

    Tracing is on when the OTEL_* variables of `env` configure an exporter, or when
    `span_exporter` is given (tests); then traced twins of the planner, connectors and HTTP
    client are wired in place of the plain ones (telemetry/tracing.py).
    """
    metrics = Metrics()
    tracing = tracing_from_env(env, span_exporter)
    specs = config.providers
    if config.autoregister:
        specs = specs + providers_from_env(env, config.providers)
    routing = with_default_target(config.routing, specs)
    link = await open_link(config, env, metrics)
    store = open_state_store(config.state.url, config.state.registry_file, link,
                             config.state.key_prefix)
    registry = Registry(store, routing)
    await registry.load(specs)
    if secrets is not None:
        secrets.registry = registry
    rng = random.Random()
    res = config.resilience
    breakers = ProviderBreakers(res.breaker)
    shared = None if link is None else SharedState.open(
        link, breakers, registry.stats, replicas=config.state.replicas,
        timeout_s=config.state.timeout_s, key_prefix=config.state.key_prefix)
    resilience = Resilience(breakers, RateLimiter(shared.limits if shared else None), res, rng,
                            CooldownBook(res.cooldown), shared.slots if shared else None)
    gate = RouterGate(registry, env, resilience.breakers, resilience.limiter,
                      resilience.cooldowns)
    auth = config.auth
    egress = EgressPolicy(auth.allowed_upstream_networks, auth.allow_loopback_upstream)
    # Only runtime registrations are guarded: config and environment providers are trusted.
    connector_settings = replace(config.connectors, egress=EgressGuard(
        egress, {spec.name: spec for spec in specs}))
    if tracing is None:
        pool = ConnectorPool(connector_settings)
        planner = Planner(registry, routing, rng, gate)
    else:
        pool = ConnectorPool(replace(connector_settings, tracing=tracing),
                             traced_factory(create_connector, tracing))
        planner = TracedPlanner(registry, routing, rng, gate, tracing)
    status = ProviderStatusView(registry, gate, resilience.breakers)
    # Only providers from the config file and the environment are trusted key owners.
    key_policy = KeyReferencePolicy(config.auth.register_key_envs, specs)
    router_args = (registry, planner, pool, resilience, status,
                   metrics, env, key_policy, routing.default_completion_tokens,
                   RegisterSafety(egress, auth.register_command_providers,
                                  config.connectors.proxies))
    cache = _open_cache(config, metrics, link)
    # Without a cache the plain Router serves: the cache costs nothing when it is off.
    router = Router(*router_args, hedge=routing.hedge) if cache is None else CachingRouter(
        cache, config.cache, *router_args, hedge=routing.hedge)
    health = HealthReporter()
    await health.starting()
    if link is not None:
        link.add_status_listener(health.state_backend)
    monitor = HealthMonitor(registry, pool, gate, resilience.breakers, metrics, health.provider,
                            res.health_interval_s, res.probe_timeout_s)

    client_keys = _api_keys(env, auth.client_keys_env)
    admin_keys = _api_keys(env, auth.admin_keys_env)
    # Tenants: only when configured is the router wrapped (no tenant work per call otherwise).
    spend = open_spend_store(config, env, link) if config.tenants else None
    tenant_router = None
    if spend is not None:
        tenant_router = TenantRouter(router, registry, {t.name: t for t in config.tenants},
                                     spend, MemoryBucketStore(), metrics,
                                     routing.default_completion_tokens)
    tenant_keys = TenantKeys({h: t.name for t in config.tenants for h in t.key_hashes})
    # No keys at all: the service is open, and an interceptor that lets everything through
    # would still cost a coroutine on every call.
    interceptors = ([AuthInterceptor(client_keys, admin_keys, tenant_keys)]
                    if client_keys or admin_keys or tenant_keys else [])
    options = server_options(config.server.max_message_bytes)
    server = grpc.aio.server(
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs or None,
    )
    calls = CallLog(metrics, LineWriter(sys.stderr.buffer) if config.logging.access else None,
                    tracing)
    observer = Observer(metrics, calls, tracing, content=config.logging.content)
    servicer = RouterServicer(tenant_router or router, observer,
                              config.server.default_deadline_s, tenant_router)
    servicer.add_to(server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    if config.server.reflection:
        names = (router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
                 "grpc.health.v1.Health", reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    port, tls = await bind(server, listen or config.server.listen, "server.listen",
                           config.server.tls, config.server.tls_reload_interval_s,
                           lambda result: metrics.tls_reloads.labels(result).inc())
    health_server, health_port = (
        health_only_server(health.servicer, config.server.health_listen, options)
        if config.server.health_listen else (None, 0))
    metrics.providers.set(len(registry.snapshot().providers))
    return App(config, server, port, health, tenant_router or router, registry, pool, store,
               metrics, monitor, LoopLagProbe(metrics.loop_lag, metrics.loop_stalls),
               GcPacer(metrics.gc_sweeps, config.server.gc_freeze_interval_s,
                       config.server.gc_sweep_interval_s),
               tls, health_server, health_port, cache, spend, link, shared, calls, tracing)


def _open_cache(config: Config, metrics: Metrics, link: RedisLink | None
                ) -> CacheBackend | None:
    """The response cache's backend when `[cache] enabled`, its size and evictions metered.
    A cache on the state store's Redis shares the process's one connection to it."""
    if not config.cache.enabled:
        return None
    if link is not None and config.cache.url == config.state.url:
        return RedisCache(link.client, config.cache.key_prefix, owns_client=False)
    backend = open_cache(config.cache, lambda reason: metrics.cache_evictions.labels(reason).inc())
    if isinstance(backend, MemoryCache):
        metrics.cache_bytes.set_function(lambda: backend.size)
    return backend


def open_spend_store(config: Config, env: Mapping[str, str], link: RedisLink | None
                     ) -> SpendStore:
    """Tenant spend where the state lives: Redis (global, and tolerant of its outages) for
    redis://, else this process (per replica)."""
    state = config.state
    if link is None:
        return MemorySpendStore()
    password = env.get(state.password_env) if state.password_env else None
    remote = RedisSpendStore.from_url(state.url, state.key_prefix, password)
    return OutageTolerantSpendStore(remote, link, state.timeout_s)


async def open_link(config: Config, env: Mapping[str, str], metrics: Metrics
                    ) -> RedisLink | None:
    """The process's connection to Redis when `[state] url` names one (checked once, so an
    unreachable Redis is logged at start; the service starts anyway, on its config)."""
    state = config.state
    if not is_redis_url(state.url):
        metrics.state_backend_up.set(1.0)
        return None
    password = env.get(state.password_env) if state.password_env else None
    link = RedisLink.from_url(state.url, password, metrics.state_backend_up)
    await link.check()
    return link


async def serve(config: Config, env: Mapping[str, str], secrets: SecretIndex | None = None,
                listen: str | None = None) -> int:
    """Run until SIGTERM or SIGINT, then drain; returns the process exit code."""
    app = await create_app(config, env, listen, secrets)
    if config.metrics.port:
        try:
            app.metrics.serve(config.metrics.host, config.metrics.port)
        except OSError as error:  # a port in use is a configuration mistake, not a crash
            await app.shutdown(0.0, 0.0)
            raise ConfigError("metrics.port", str(config.metrics.port),
                              f"a port this process can bind ({error.strerror})") from error
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    # Only a serving process paces (and settles) its collector: an in-process App (tests)
    # leaves the host's garbage collector alone.
    app.gc_pacer.start(settle=True)
    log.info("%s ready (health service %r)", SERVICE_NAME, SERVICE_NAME)
    await stop.wait()
    log.info("signal received: shutting down")
    await app.shutdown()
    return 0
