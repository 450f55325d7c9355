"""Registry: register/unregister semantics, validation, listeners, persistence and merging."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_router.domain import (
    MetricsReport,
    ModelSpec,
    ProviderSpec,
    RegisterOutcome,
    Secret,
)
from provider_router.errors import (
    ConfigError,
    InvalidRequestError,
    UnknownProviderError,
)
from provider_router.routing.registry import Registry, RegistrySnapshot
from provider_router.routing.settings import RoutingSettings
from provider_router.state.base import ChangeCallback, ProviderChange, StoreHealth, Unsubscribe
from provider_router.state.memory import MemoryStateStore

from .factories import FakeClock, make_registry, provider

Event = tuple[str | None, str | None]


def record(registry: Registry) -> list[Event]:
    events: list[Event] = []
    registry.add_listener(lambda old, new: events.append(
        (old.name if old else None, new.name if new else None)))
    return events


async def test_register_creates_replaces_and_is_idempotent() -> None:
    registry = await make_registry()
    events = record(registry)
    a = provider("a", "m")
    assert await registry.register(a) == RegisterOutcome(a, created=True, changed=True)
    v1 = registry.snapshot().version
    assert await registry.register(replace(a)) == RegisterOutcome(a, created=False,
                                                                  changed=False)
    assert registry.snapshot().version == v1
    a2 = replace(a, priority=5)
    assert await registry.register(a2) == RegisterOutcome(a2, created=False, changed=True)
    assert registry.snapshot().providers["a"] is a2
    assert events == [(None, "a"), ("a", "a")]


async def test_a_published_snapshot_never_changes() -> None:
    registry = await make_registry(provider("a", "m"))
    before = registry.snapshot()
    await registry.register(provider("b", "m"))
    await registry.unregister("a")
    assert set(before.providers) == {"a"}
    assert [c.spec.name for c in before.serving("m")] == ["a"]
    after = registry.snapshot()
    assert set(after.providers) == {"b"} and after.version > before.version


async def test_register_reports_every_violation() -> None:
    registry = await make_registry()
    bad = ProviderSpec(name="Bad Name", kind=provider("x").kind, weight=-1, priority=5000)
    with pytest.raises(InvalidRequestError) as caught:
        await registry.register(bad)
    fields = [v.field for v in caught.value.violations]
    assert fields == ["provider.name", "provider.models", "provider.priority", "provider.weight"]
    assert "and 1 more" in caught.value.message
    assert registry.snapshot().providers == {}


async def test_unregister_removes_and_unknown_is_not_found() -> None:
    registry = await make_registry(provider("a", "m", "n"), provider("b", "m"))
    events = record(registry)
    registry.stats.start("a")
    removed = await registry.unregister("a")
    assert removed.name == "a"
    snap = registry.snapshot()
    assert [c.spec.name for c in snap.serving("m")] == ["b"]
    assert snap.serving("n") == () and "n" not in snap.by_model
    assert registry.stats.in_flight("a") == 0  # its stats are gone
    assert events == [("a", None)]
    with pytest.raises(UnknownProviderError):
        await registry.unregister("a")


async def test_update_metrics_validates_and_blends() -> None:
    clock = FakeClock(100.0)
    registry = await make_registry(provider("a"), clock=clock)
    with pytest.raises(UnknownProviderError):
        registry.update_metrics(MetricsReport("nobody", avg_latency_ms=1.0))
    with pytest.raises(InvalidRequestError) as caught:
        registry.update_metrics(MetricsReport("a", avg_latency_ms=-1.0, error_rate=1.5,
                                              load=float("nan"), ttl_s=0.0))
    assert [v.field for v in caught.value.violations] == ["avg_latency_ms", "error_rate", "load",
                                                          "ttl"]
    registry.update_metrics(MetricsReport("a", avg_latency_ms=200.0, error_rate=0.5, load=0.4,
                                          ttl_s=10.0))
    view = registry.stats.view("a", clock.now)
    assert (view.latency_ema_ms, view.error_rate, view.load) == (200.0, 0.5, 0.4)
    assert view.reported is not None and view.reported.expires_at == 110.0


async def test_listeners_may_change_the_registry_themselves() -> None:
    registry = await make_registry()
    seen: list[str] = []

    def listener(old: ProviderSpec | None, new: ProviderSpec | None) -> None:
        seen.append(new.name if new else "-")
        if new is not None and new.name == "a":
            registry.stats.start("a")  # re-entrant use must not deadlock

    registry.add_listener(listener)
    await registry.register(provider("a"))
    assert seen == ["a"] and registry.stats.in_flight("a") == 1


# --- persistence and the merge rule ---------------------------------------------------------

async def test_runtime_registrations_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    first = Registry(MemoryStateStore(path), RoutingSettings())
    await first.load([provider("config-a")])
    keyed = replace(provider("runtime-b"), api_key=Secret("sk-secret"))
    await first.register(keyed)
    await first.register(provider("runtime-c"))
    await first.unregister("runtime-c")
    second = Registry(MemoryStateStore(path), RoutingSettings())
    await second.load([provider("config-a")])
    providers = second.snapshot().providers
    assert set(providers) == {"config-a", "runtime-b"}
    assert providers["runtime-b"].api_key == Secret("sk-secret")


async def test_config_wins_for_the_names_it_defines(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    first = Registry(MemoryStateStore(path), RoutingSettings())
    await first.load([provider("shared", priority=1)])
    await first.register(provider("shared", priority=99))  # runtime override of a config name
    await first.register(provider("runtime"))
    assert first.snapshot().providers["shared"].priority == 99
    second = Registry(MemoryStateStore(path), RoutingSettings())
    await second.load([provider("shared", priority=1)])
    assert second.snapshot().providers["shared"].priority == 1
    assert set(second.snapshot().providers) == {"shared", "runtime"}
    stored = json.loads(path.read_text())
    assert [p["name"] for p in stored["providers"]] == ["runtime"]  # shadowed copy dropped


async def test_load_rejects_bad_config_and_bad_persisted_specs(tmp_path: Path) -> None:
    registry = Registry(MemoryStateStore(None), RoutingSettings())
    with pytest.raises(ConfigError) as caught:
        await registry.load([provider("a"), provider("a")])
    assert caught.value.key == "providers[1].name"
    with pytest.raises(ConfigError) as caught:
        await registry.load([provider("a"), replace(provider("b"), weight=-1)])
    assert caught.value.key == "providers[1].weight"
    path = tmp_path / "registry.json"
    store = MemoryStateStore(path)
    await store.save_provider(replace(provider("persisted"), priority=10**6))
    with pytest.raises(ConfigError) as caught:
        await Registry(MemoryStateStore(path), RoutingSettings()).load([])
    assert caught.value.key == "state.registry_file"


async def test_load_again_reloads_the_config_and_keeps_runtime_registrations() -> None:
    registry = await make_registry(provider("a"), provider("b"))
    await registry.register(provider("runtime"))
    events = record(registry)
    await registry.load([provider("a", priority=3), provider("c")])
    assert set(registry.snapshot().providers) == {"a", "c", "runtime"}
    assert sorted(events, key=str) == sorted([("a", "a"), ("b", None), (None, "c")], key=str)


async def test_racing_writers_leave_the_latest_spec_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    store = MemoryStateStore(path)
    registry = Registry(store, RoutingSettings())
    await registry.load([])
    specs = [provider("x", priority=i) for i in range(30)]
    await asyncio.gather(*(registry.register(s) for s in specs))
    current = registry.snapshot().providers["x"]
    (stored,) = await MemoryStateStore(path).load_providers()
    assert stored == current


class EchoStore(MemoryStateStore):
    """A store whose change feed the test drives, like another replica would."""

    def __init__(self) -> None:
        super().__init__(None)
        self.callbacks: list[ChangeCallback] = []

    def subscribe(self, callback: ChangeCallback) -> Unsubscribe:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    async def health(self) -> StoreHealth:
        return StoreHealth(True)


async def test_changes_from_other_replicas_are_applied() -> None:
    store = EchoStore()
    registry = Registry(store, RoutingSettings())
    await registry.load([provider("a")])
    (feed,) = store.callbacks
    feed(ProviderChange("b", provider("b")))
    feed(ProviderChange("a", None))
    feed(ProviderChange("bad", replace(provider("bad"), weight=-5)))  # ignored, logged
    assert set(registry.snapshot().providers) == {"b"}
    await registry.aclose()
    assert store.callbacks == []


# --- the snapshot's indexes -----------------------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from("abcdef"),
                         st.sets(st.sampled_from(["m1", "m2", "m3"]), max_size=3),
                         st.integers(-2, 2)), max_size=25)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_incremental_indexes_equal_a_full_rebuild(ops: list[tuple[str, set[str], int]]) -> None:
    snapshot = RegistrySnapshot.build([], 0)
    for name, models, priority in ops:
        if models:
            spec = ProviderSpec(name, provider(name).kind, priority=priority,
                                models=tuple(ModelSpec(m) for m in sorted(models)))
            snapshot = snapshot.with_provider(spec)
        elif name in snapshot.providers:
            snapshot = snapshot.without_provider(name)
    rebuilt = RegistrySnapshot.build(snapshot.providers.values(), snapshot.version)
    assert snapshot.by_model == rebuilt.by_model
    assert snapshot.by_provider == rebuilt.by_provider


async def test_a_failing_listener_is_logged_and_does_not_stop_the_change(
        caplog: pytest.LogCaptureFixture) -> None:
    registry = await make_registry()
    seen: list[str] = []

    def broken(old: ProviderSpec | None, new: ProviderSpec | None) -> None:
        raise RuntimeError("connector factory exploded")

    registry.add_listener(broken)
    registry.add_listener(lambda old, new: seen.append(new.name if new else "-"))
    outcome = await registry.register(provider("a"))
    assert outcome.created and "a" in registry.snapshot().providers
    assert seen == ["a"]
    assert "registry listener" in caplog.text and "exploded" in caplog.text
