"""Prometheus metrics, held by one object per server (no module-level registry).

Every labelled metric sits behind a LabelCache: prometheus_client's `labels()` validates and
stringifies the values and takes a lock on each call (about 2 µs); the cache turns the
steady-state lookup into one dict hit on a tuple of the label values.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

M = TypeVar("M", bound="Labelled")

LOOP_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
                    1.0, 2.5)
"""Edges fine around 50 ms, the stall threshold the benchmark holds the server to."""


class Labelled(Protocol):
    """A prometheus_client metric with labels."""

    def labels(self: M, *values: str) -> M:
        """The child for these label values."""
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


class Metrics:
    """The service's metrics on a private registry, exposed when a port is configured."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = LabelCache(Counter(
            "provider_router_rpcs", "RPCs handled, by method and status code.",
            ["method", "code"], registry=self.registry))
        self.rpc_seconds = LabelCache(Histogram(
            "provider_router_rpc_seconds", "RPC latency by method.", ["method"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry))
        self.attempts = LabelCache(Counter(
            "provider_router_attempts", "Provider attempts by outcome.",
            ["provider", "outcome"], registry=self.registry))
        # Hedged requests (routing/hedge.py): the extra calls, who won, and the spend of the
        # attempts that lost (never charged to the caller, still paid to the provider).
        self.hedges = LabelCache(Counter(
            "provider_router_hedges",
            "Hedged attempts started: extra upstream calls, by the provider hedged to.",
            ["provider"], registry=self.registry))
        self.hedge_races = LabelCache(Counter(
            "provider_router_hedge_races",
            "Requests in which a hedge fired, by who answered first: primary, hedge, or "
            "none (every attempt failed).",
            ["winner"], registry=self.registry))
        self.uncharged_tokens = LabelCache(Counter(
            "provider_router_uncharged_tokens",
            "Tokens spent at providers but not charged to the caller, by outcome (hedge_lost) "
            "and kind (prompt, completion); estimated=true for an attempt cancelled before its "
            "usage was known: its estimated prompt tokens (what it generated is unknown).",
            ["provider", "outcome", "kind", "estimated"], registry=self.registry))
        self.uncharged_cost = LabelCache(Counter(
            "provider_router_uncharged_cost_usd",
            "USD spent at providers but not charged to the caller, by outcome (hedge_lost); "
            "from the same (possibly estimated) tokens; unknown prices add nothing.",
            ["provider", "outcome"], registry=self.registry))
        self.breaker_state = LabelCache(Gauge(
            "provider_router_breaker_open", "1 while a provider's breaker is open.",
            ["provider"], registry=self.registry))
        self.providers = Gauge("provider_router_providers", "Registered providers.",
                               registry=self.registry)
        self.state_backend_up = Gauge(
            "provider_router_state_backend_up",
            "1 while the state backend (Redis, or the embedded store) is reachable; 0 while "
            "the process serves from its last known state.", registry=self.registry)
        self.loop_lag = Histogram(
            "provider_router_event_loop_lag_seconds",
            "How late the event loop ran a timer: time it could not serve anything else.",
            buckets=LOOP_LAG_BUCKETS, registry=self.registry)
        self.gc_sweeps = Histogram(
            "provider_router_gc_sweep_seconds",
            "Full garbage-collector sweeps of the paced heap (see gc_pacer.py): the one pause "
            "that grows with the number of live objects.",
            buckets=LOOP_LAG_BUCKETS, registry=self.registry)
        self.tls_reloads = LabelCache(Counter(
            "provider_router_tls_reloads",
            "Changes of the TLS files seen: loaded (new connections use them) or rejected "
            "(unreadable or a key that does not match; the current certificate stays).",
            ["result"], registry=self.registry))
        self.loop_stalls = Counter(
            "provider_router_event_loop_stalls",
            "Times the event loop was blocked longer than the stall threshold.",
            registry=self.registry)

        self.cache_lookups = LabelCache(Counter(
            "provider_router_cache_lookups",
            "Response cache lookups by result: hit, miss, or error (backend unreachable).",
            ["result"], registry=self.registry))
        self.cache_stores = Counter("provider_router_cache_stores",
                                    "Answers stored in the response cache.",
                                    registry=self.registry)
        self.cache_skips = LabelCache(Counter(
            "provider_router_cache_skips",
            "Requests that bypassed the cache, or answers it did not store, by reason.",
            ["reason"], registry=self.registry))
        self.cache_evictions = LabelCache(Counter(
            "provider_router_cache_evictions",
            "Entries the memory cache dropped, by reason (size, expired, replaced).",
            ["reason"], registry=self.registry))
        self.cache_bytes = Gauge("provider_router_cache_bytes",
                                 "Bytes held by the memory cache.", registry=self.registry)
        self.cache_saved_usd = Counter(
            "provider_router_cache_saved_usd",
            "Provider cost that cache hits avoided (the original answers' cost).",
            registry=self.registry)
        # Tenants (routing/tenancy.py); children appear only when tenants are configured.
        self.tenant_cost = LabelCache(Counter(
            "provider_router_tenant_cost_usd", "USD spent, by tenant, provider and model.",
            ["tenant", "provider", "model"], registry=self.registry))
        self.tenant_tokens = LabelCache(Counter(
            "provider_router_tenant_tokens", "Tokens used, by tenant, provider, model and "
            "kind (prompt or completion).", ["tenant", "provider", "model", "kind"],
            registry=self.registry))
        self.budget_rejections = LabelCache(Counter(
            "provider_router_budget_rejections", "Calls refused because the tenant's budget "
            "for the period (day or month) was spent.", ["tenant", "period"],
            registry=self.registry))
        self.tenant_rate_limited = LabelCache(Counter(
            "provider_router_tenant_rate_limited", "Calls refused by a tenant's own RPM/TPM.",
            ["tenant"], registry=self.registry))

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics over HTTP on a background thread (prometheus_client's own)."""
        start_http_server(port, addr=host, registry=self.registry)
