"""Many threads and tasks registering, unregistering and deciding at once never see a torn
snapshot: every snapshot's indexes agree with its providers, and every decision is whole."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading

from provider_router.domain import ModelSpec, ProviderKind, ProviderSpec, Strategy
from provider_router.errors import UnavailableError, UnknownProviderError
from provider_router.routing.planner import Planner
from provider_router.routing.registry import Registry, RegistrySnapshot
from provider_router.routing.settings import RoutingSettings
from provider_router.state.memory import MemoryStateStore

from .factories import request

NAMES = [f"p{i}" for i in range(12)]


def spec(name: str, generation: int) -> ProviderSpec:
    """A spec whose own model carries its generation: a torn index would mix generations."""
    return ProviderSpec(name, ProviderKind.MOCK, priority=generation % 3,
                        labels=(f"gen-{generation}",),
                        models=(ModelSpec("shared"), ModelSpec(f"own-{name}-{generation}")))


def check_whole(snapshot: RegistrySnapshot) -> None:
    providers = snapshot.providers
    assert set(snapshot.by_provider) == set(providers)
    served = {c.spec.name for c in snapshot.serving("shared")}
    assert served == set(providers)
    for model, candidates in snapshot.by_model.items():
        for c in candidates:
            assert providers[c.spec.name] is c.spec, "index points at a replaced spec"
            assert c.target.model == model
        keys = [(-c.spec.priority, c.spec.name) for c in candidates]
        assert keys == sorted(keys)
    for name, spec_ in providers.items():
        generation = spec_.labels[0].removeprefix("gen-")
        assert [c.spec.name for c in snapshot.serving(f"own-{name}-{generation}")] == [name]


async def churn(registry: Registry, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    for generation in range(rounds):
        name = rng.choice(NAMES)
        if rng.random() < 0.3 and name in registry.snapshot().providers:
            with contextlib.suppress(UnknownProviderError):  # another writer was first
                await registry.unregister(name)
        else:
            await registry.register(spec(name, seed * 10_000 + generation))
        check_whole(registry.snapshot())


def read(registry: Registry, planner: Planner, stop: threading.Event,
         failures: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            check_whole(registry.snapshot())
            try:
                decision = planner.decide(request("shared"))
            except UnavailableError:
                continue  # every provider unregistered at that instant
            chosen = [t.provider for t in decision.targets]
            assert len(chosen) == len(set(chosen))
            assert all(t.model == "shared" for t in decision.targets)
    except BaseException as error:  # reported by the test on the main thread
        failures.append(error)


async def test_writers_and_readers_in_threads_and_tasks() -> None:
    settings = RoutingSettings(strategy=Strategy.ROUND_ROBIN)
    store = MemoryStateStore(None)
    registry = Registry(store, settings)
    initial = [spec(name, 0) for name in NAMES[:4]]
    await registry.load(initial)
    planner = Planner(registry, settings, random.Random(1))
    events: list[tuple[ProviderSpec | None, ProviderSpec | None]] = []
    registry.add_listener(lambda old, new: events.append((old, new)))
    stop = threading.Event()
    failures: list[BaseException] = []
    readers = [threading.Thread(target=read, args=(registry, planner, stop, failures))
               for _ in range(3)]
    writers = [threading.Thread(target=lambda s=seed: asyncio.run(churn(registry, s, 150)))
               for seed in range(1, 4)]
    for thread in readers + writers:
        thread.start()
    await asyncio.gather(*(churn(registry, seed, 150) for seed in range(4, 8)),
                         *(asyncio.to_thread(w.join) for w in writers))
    stop.set()
    for thread in readers:
        thread.join()
    assert failures == []
    check_whole(registry.snapshot())
    # No update was lost: per provider, each change starts from the previous one's result,
    # and the last one is what the registry serves and the store persisted.
    latest: dict[str, ProviderSpec | None] = {s.name: s for s in initial}
    for old, new in events:
        name = (old or new).name  # type: ignore[union-attr]
        assert latest.get(name) is old
        latest[name] = new
    serving = {name: s for name, s in latest.items() if s is not None}
    assert serving == dict(registry.snapshot().providers)
    persisted = {s.name: s for s in await store.load_providers()}
    assert persisted == dict(registry.snapshot().providers)
