"""Prometheus metrics, held by one object per server (no module-level registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """The service's metrics on a private registry, exposed when a port is configured."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter("provider_router_rpcs", "RPCs handled, by method and status code.",
                            ["method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram(
            "provider_router_rpc_seconds", "RPC latency by method.", ["method"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry)
        self.attempts = Counter("provider_router_attempts", "Provider attempts by outcome.",
                                ["provider", "outcome"], registry=self.registry)
        self.breaker_state = Gauge("provider_router_breaker_open",
                                   "1 while a provider's breaker is open.", ["provider"],
                                   registry=self.registry)
        self.providers = Gauge("provider_router_providers", "Registered providers.",
                               registry=self.registry)
        self.state_store_ok = Gauge("provider_router_state_store_ok",
                                    "1 while the state store is reachable.",
                                    registry=self.registry)

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics over HTTP on a background thread (prometheus_client's own)."""
        start_http_server(port, addr=host, registry=self.registry)
