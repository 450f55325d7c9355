"""The StateStore contract, run over every backend.

Add a backend by adding a factory to BACKENDS: a callable that opens a fresh handle on the
same backend state (the same file, the same Redis database) each time it is called, so
"restart" and "another replica" mean the same thing for every backend. Backends whose handles
share a change feed (Redis pub/sub) list themselves in SHARED_FEED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provider_router.domain import ModelSpec, ProviderKind, ProviderSpec, Secret
from provider_router.state.base import ProviderChange, StateStore
from provider_router.state.memory import MemoryStateStore

Opener = Callable[[], StateStore]

SPEC = ProviderSpec("alpha", ProviderKind.OPENAI, api_key=Secret("sk-contract"),
                    models=(ModelSpec("gpt-4o", 2.5, 10.0, 128_000),), priority=3)


def memory_backend(tmp_path: Path) -> Iterator[Opener]:
    path = tmp_path / "registry.json"
    yield lambda: MemoryStateStore(path)


BACKENDS = {"memory": memory_backend}
SHARED_FEED: frozenset[str] = frozenset()  # memory:// has one handle per process


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(backend: str, tmp_path: Path) -> Iterator[Opener]:
    yield from BACKENDS[backend](tmp_path)


async def test_it_starts_empty_and_is_healthy(opener: Opener) -> None:
    store = opener()
    assert await store.load_providers() == ()
    assert (await store.health()).ok
    await store.aclose()


async def test_save_replace_delete(opener: Opener) -> None:
    store = opener()
    await store.save_provider(SPEC)
    await store.save_provider(replace(SPEC, name="beta"))
    await store.save_provider(replace(SPEC, priority=7))
    assert [(s.name, s.priority) for s in await store.load_providers()] == [("alpha", 7),
                                                                            ("beta", 3)]
    assert await store.delete_provider("beta") is True
    assert await store.delete_provider("beta") is False
    assert [s.name for s in await store.load_providers()] == ["alpha"]
    await store.aclose()


async def test_writes_are_durable_and_keep_the_secret(opener: Opener) -> None:
    first = opener()
    await first.save_provider(SPEC)
    await first.aclose()
    second = opener()
    assert await second.load_providers() == (SPEC,)
    assert (await second.load_providers())[0].api_key == Secret("sk-contract")
    await second.aclose()


async def test_a_handle_never_hears_its_own_writes(opener: Opener) -> None:
    store = opener()
    heard: list[ProviderChange] = []
    unsubscribe = store.subscribe(heard.append)
    await store.save_provider(SPEC)
    await store.delete_provider(SPEC.name)
    assert heard == []
    unsubscribe()
    unsubscribe_again = store.subscribe(heard.append)
    unsubscribe_again()
    await store.aclose()


async def test_other_handles_hear_every_change(backend: str, opener: Opener) -> None:
    if backend not in SHARED_FEED:
        pytest.skip(f"{backend}: handles share no change feed")
    writer, listener = opener(), opener()
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await writer.save_provider(SPEC)
    await writer.delete_provider(SPEC.name)
    for _ in range(100):  # a shared feed delivers asynchronously
        if len(heard) >= 2:
            break
        await asyncio.sleep(0.02)
    assert heard == [ProviderChange(SPEC.name, SPEC), ProviderChange(SPEC.name, None)]
    await writer.aclose()
    await listener.aclose()
