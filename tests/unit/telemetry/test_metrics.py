"""Metric children are looked up once; the samples still land in the registry."""

from __future__ import annotations

from provider_router.telemetry.metrics import Metrics


def test_label_cache_returns_the_same_child_and_counts() -> None:
    metrics = Metrics()
    child = metrics.rpcs.labels("Chat", "OK")
    assert metrics.rpcs.labels("Chat", "OK") is child
    child.inc()
    metrics.rpcs.labels("Chat", "OK").inc()
    metrics.rpc_seconds.labels("Chat").observe(0.002)
    metrics.attempts.labels("p", "m", "success").inc()
    registry = metrics.registry
    assert registry.get_sample_value("provider_router_rpcs_total",
                                     {"method": "Chat", "code": "OK"}) == 2
    assert registry.get_sample_value("provider_router_rpc_seconds_count",
                                     {"method": "Chat"}) == 1
    assert registry.get_sample_value("provider_router_attempts_total",
                                     {"provider": "p", "model": "m", "outcome": "success"}) == 1
