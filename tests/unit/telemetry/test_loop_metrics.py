"""Loop-written counters and histograms expose what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from provider_router.telemetry.loop_metrics import LoopMetrics


def test_a_histogram_matches_prometheus_clients_for_the_same_observations() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = LoopMetrics(ours_registry).histogram("h_seconds", "help", ["m"], (0.1, 0.5, 1.0))
    theirs = Histogram("h_seconds", "help", ["m"], buckets=(0.1, 0.5, 1.0),
                       registry=theirs_registry)
    for value in (0.0, 0.1, 0.2, 0.5, 0.7, 1.0, 3.0):  # edges land in their own bucket (le)
        ours.observe(("Chat",), value)
        theirs.labels("Chat").observe(value)
    ours.observe(("StreamChat",), 0.3)
    theirs.labels("StreamChat").observe(0.3)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
        return {(s.name, s.labels.get("m", ""), s.labels.get("le", "")): s.value
                for family in registry.collect() for s in family.samples
                if not s.name.endswith("_created")}

    assert samples(ours_registry) == samples(theirs_registry)
    assert samples(ours_registry)[("h_seconds_bucket", "Chat", "0.5")] == 4
    assert b'h_seconds_bucket{le="+Inf",m="Chat"} 7.0' in generate_latest(ours_registry)


def test_a_counter_adds_per_label_tuple_and_exposes_total() -> None:
    registry = CollectorRegistry()
    tokens = LoopMetrics(registry).counter("t", "help", ["provider", "direction"])
    tokens.inc(("a", "input"), 12)
    tokens.inc(("a", "input"), 3)
    tokens.inc(("b", "output"))
    assert registry.get_sample_value("t_total", {"provider": "a", "direction": "input"}) == 15
    assert registry.get_sample_value("t_total", {"provider": "b", "direction": "output"}) == 1
