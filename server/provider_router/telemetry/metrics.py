"""Prometheus metrics, held by one object per server (no module-level registry).

Every labelled metric sits behind a LabelCache: prometheus_client's `labels()` validates and
stringifies the values and takes a lock on each call (about 2 µs); the cache turns the
steady-state lookup into one dict hit on a tuple of the label values.

Names follow Prometheus conventions (`promtool check metrics` is clean, see
tests/integration/test_metrics_scrape.py): base units (seconds, USD), `_total` on counters
(prometheus_client appends it), one metric per quantity with its dimensions as labels.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from provider_router.telemetry.loop_metrics import LoopMetrics

M = TypeVar("M", bound="Labelled")

LOOP_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
                    1.0, 2.5)
"""Edges fine around 50 ms, the stall threshold the benchmark holds the server to."""

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""RPC and upstream latency: from a cached millisecond to a two-minute completion."""

OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0)
"""The router's own share of a call: sub-millisecond when healthy, so the edges start low."""

BREAKER_STATES = ("closed", "open", "half_open")
"""Values of the `state` label of provider_router_breaker_state (one is 1, the others 0)."""


class Labelled(Protocol):
    """A prometheus_client metric with labels."""

    def labels(self: M, *values: str) -> M:
        """The child for these label values."""
        ...

    def remove(self, *values: str) -> None:
        """Drop the child for these label values."""
        ...


class LabelCache(Generic[M]):
    """A labelled metric whose children are looked up once per label combination."""

    __slots__ = ("_children", "metric")

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        """The child for these label values (created on first use, then cached)."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def remove(self, *values: str) -> None:
        """Drop the child for these label values, from the cache and the exposition."""
        if self._children.pop(values, None) is not None:
            self.metric.remove(*values)


class Metrics:
    """The service's metrics on a private registry, exposed when a port is configured."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self._server: WSGIServer | None = None
        # --- RPCs ---------------------------------------------------------------------------
        self.rpcs = LabelCache(Counter(
            "provider_router_rpcs", "RPCs handled, by method and gRPC status code.",
            ["method", "code"], registry=registry))
        self.rpc_seconds = LabelCache(Histogram(
            "provider_router_rpc_seconds", "RPC latency by method, as the server saw it.",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry))
        # Written per call by the event loop only: the cheap kind (telemetry/loop_metrics.py).
        loop = LoopMetrics(registry)
        self.overhead_seconds = loop.histogram(
            "provider_router_overhead_seconds",
            "Time a successful Chat or StreamChat spent in the router rather than waiting for "
            "providers: its latency less the duration of every upstream attempt.",
            ["method"], OVERHEAD_BUCKETS)
        self.open_streams = Gauge(
            "provider_router_open_streams", "StreamChat calls in progress.", registry=registry)
        # --- upstream -----------------------------------------------------------------------
        self.attempts = LabelCache(Counter(
            "provider_router_attempts", "Provider attempts by provider, model and outcome "
            "(skipped: breaker open or a local limit reached).",
            ["provider", "model", "outcome"], registry=registry))
        self.upstream_seconds = loop.histogram(
            "provider_router_upstream_seconds",
            "Duration of each attempt made at a provider (whole answer; whole stream).",
            ["provider", "model"], LATENCY_BUCKETS)
        self.ttft_seconds = loop.histogram(
            "provider_router_time_to_first_token_seconds",
            "StreamChat: time from the call's arrival to the first delta sent to the caller.",
            ["provider", "model"], LATENCY_BUCKETS)
        self.tokens = loop.counter(
            "provider_router_tokens", "Tokens of answered calls, by provider, model and "
            "direction (input: prompt, output: completion).",
            ["provider", "model", "direction"])
        self.cost_usd = loop.counter(
            "provider_router_cost_usd", "Spend of answered calls in US dollars, at the "
            "configured prices (calls to models without a price add nothing).",
            ["provider", "model"])
        self.limiter_rejections = LabelCache(Counter(
            "provider_router_limiter_rejections", "Attempts a local limit turned away, by "
            "provider and limit (rate: rpm/tpm; concurrency: max_concurrent).",
            ["provider", "limit"], registry=registry))
        # Hedged requests (routing/hedge.py): the extra calls, who won, and the spend of the
        # attempts that lost (never charged to the caller, still paid to the provider).
        self.hedges = LabelCache(Counter(
            "provider_router_hedges",
            "Hedged attempts started: extra upstream calls, by the provider hedged to.",
            ["provider"], registry=registry))
        self.hedge_races = LabelCache(Counter(
            "provider_router_hedge_races",
            "Requests in which a hedge fired, by who answered first: primary, hedge, or "
            "none (every attempt failed).",
            ["winner"], registry=registry))
        self.uncharged_tokens = LabelCache(Counter(
            "provider_router_uncharged_tokens",
            "Tokens spent at providers but not charged to the caller, by outcome (hedge_lost) "
            "and kind (prompt, completion); estimated=true for an attempt cancelled before its "
            "usage was known: its estimated prompt tokens (what it generated is unknown).",
            ["provider", "outcome", "kind", "estimated"], registry=registry))
        self.uncharged_cost = LabelCache(Counter(
            "provider_router_uncharged_cost_usd",
            "USD spent at providers but not charged to the caller, by outcome (hedge_lost); "
            "from the same (possibly estimated) tokens; unknown prices add nothing.",
            ["provider", "outcome"], registry=registry))
        # --- providers ----------------------------------------------------------------------
        self.breaker_state = LabelCache(Gauge(
            "provider_router_breaker_state", "Circuit breaker state per provider: 1 for the "
            "current state (closed, open, half_open), 0 for the others.",
            ["provider", "state"], registry=registry))
        self.provider_up = LabelCache(Gauge(
            "provider_router_provider_up", "1 while a provider is served to callers (enabled, "
            "key present, probe passing, breaker not open), else 0.",
            ["provider"], registry=registry))
        self.providers = Gauge("provider_router_providers", "Registered providers.",
                               registry=registry)
        self.state_backend_up = Gauge(
            "provider_router_state_backend_up",
            "1 while the state backend (Redis, or the embedded store) is reachable; 0 while "
            "the process serves from its last known state.", registry=registry)
        # --- the process --------------------------------------------------------------------
        self.loop_lag = Histogram(
            "provider_router_event_loop_lag_seconds",
            "How late the event loop ran a timer: time it could not serve anything else.",
            buckets=LOOP_LAG_BUCKETS, registry=registry)
        self.gc_sweeps = Histogram(
            "provider_router_gc_sweep_seconds",
            "Full garbage-collector sweeps of the paced heap (see gc_pacer.py): the one pause "
            "that grows with the number of live objects.",
            buckets=LOOP_LAG_BUCKETS, registry=registry)
        self.tls_reloads = LabelCache(Counter(
            "provider_router_tls_reloads",
            "Changes of the TLS files seen: loaded (new connections use them) or rejected "
            "(unreadable or a key that does not match; the current certificate stays).",
            ["result"], registry=registry))
        self.loop_stalls = Counter(
            "provider_router_event_loop_stalls",
            "Times the event loop was blocked longer than the stall threshold.",
            registry=registry)

        self.cache_lookups = LabelCache(Counter(
            "provider_router_cache_lookups",
            "Response cache lookups by result: hit, miss, or error (backend unreachable).",
            ["result"], registry=registry))
        self.cache_stores = Counter("provider_router_cache_stores",
                                    "Answers stored in the response cache.",
                                    registry=registry)
        self.cache_skips = LabelCache(Counter(
            "provider_router_cache_skips",
            "Requests that bypassed the cache, or answers it did not store, by reason.",
            ["reason"], registry=registry))
        self.cache_evictions = LabelCache(Counter(
            "provider_router_cache_evictions",
            "Entries the memory cache dropped, by reason (size, expired, replaced).",
            ["reason"], registry=registry))
        self.cache_bytes = Gauge("provider_router_cache_bytes",
                                 "Bytes held by the memory cache.", registry=registry)
        self.cache_saved_usd = Counter(
            "provider_router_cache_saved_usd",
            "Provider cost that cache hits avoided (the original answers' cost).",
            registry=registry)
        # Tenants (routing/tenancy.py); children appear only when tenants are configured.
        self.tenant_cost = LabelCache(Counter(
            "provider_router_tenant_cost_usd", "USD spent, by tenant, provider and model.",
            ["tenant", "provider", "model"], registry=registry))
        self.tenant_tokens = LabelCache(Counter(
            "provider_router_tenant_tokens", "Tokens used, by tenant, provider, model and "
            "kind (prompt or completion).", ["tenant", "provider", "model", "kind"],
            registry=registry))
        self.budget_rejections = LabelCache(Counter(
            "provider_router_budget_rejections", "Calls refused because the tenant's budget "
            "for the period (day or month) was spent.", ["tenant", "period"],
            registry=registry))
        self.tenant_rate_limited = LabelCache(Counter(
            "provider_router_tenant_rate_limited", "Calls refused by a tenant's own RPM/TPM.",
            ["tenant"], registry=registry))

    def set_breaker(self, provider: str, state: str) -> None:
        """Mark `state` (one of BREAKER_STATES) as the provider's current breaker state."""
        for name in BREAKER_STATES:
            self.breaker_state.labels(provider, name).set(1.0 if name == state else 0.0)

    def forget_provider(self, provider: str) -> None:
        """Drop the per-provider gauges of a removed provider (counters keep their totals)."""
        for name in BREAKER_STATES:
            self.breaker_state.remove(provider, name)
        self.provider_up.remove(provider)

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics over HTTP on a background thread (prometheus_client's own)."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Stop serving /metrics (at shutdown)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
