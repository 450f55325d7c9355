"""The StateStore contract, run over every backend.

Add a backend by adding a factory to BACKENDS: a callable that opens a fresh handle on the
same backend state (the same file, the same Redis database) each time it is called, so
"restart" and "another replica" mean the same thing for every backend. Backends whose handles
share a change feed (Redis pub/sub) list themselves in SHARED_FEED.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from provider_router.domain import ModelSpec, ProviderKind, ProviderSpec, Secret
from provider_router.state.base import ProviderChange, StateStore
from provider_router.state.memory import MemoryStateStore
from provider_router.state.redis import RedisStateStore
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer

Opener = Callable[[], StateStore]
Backend = Callable[[Path, pytest.FixtureRequest], AsyncIterator[Opener]]

SPEC = ProviderSpec("alpha", ProviderKind.OPENAI, api_key=Secret("sk-contract"),
                    models=(ModelSpec("gpt-4o", 2.5, 10.0, 128_000),), priority=3)


async def memory_backend(tmp_path: Path, request: pytest.FixtureRequest
                         ) -> AsyncIterator[Opener]:
    path = tmp_path / "registry.json"
    yield lambda: MemoryStateStore(path)


async def redis_backend(tmp_path: Path, request: pytest.FixtureRequest
                        ) -> AsyncIterator[Opener]:
    # Each handle gets a link of its own, as each replica has: one real redis-server.
    server: RedisServer = request.getfixturevalue("redis_server")
    links: list[RedisLink] = []

    def open_handle() -> StateStore:
        links.append(RedisLink.from_url(server.url, None))
        return RedisStateStore(links[-1], "contract:")

    yield open_handle
    for link in links:
        await link.aclose()


BACKENDS: dict[str, Backend] = {"memory": memory_backend, "redis": redis_backend}
SHARED_FEED = frozenset({"redis"})  # handles that hear each other (memory: one per process)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def opener(backend: str, tmp_path: Path, request: pytest.FixtureRequest
                 ) -> AsyncIterator[Opener]:
    async for open_handle in BACKENDS[backend](tmp_path, request):
        yield open_handle


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


async def heard_after(heard: list[ProviderChange], count: int, seconds: float = 5.0
                      ) -> list[ProviderChange]:
    """`heard` once it holds `count` changes, or after `seconds` (a feed is asynchronous)."""
    for _ in range(int(seconds / 0.02)):
        if len(heard) >= count:
            break
        await asyncio.sleep(0.02)
    return heard


async def test_other_handles_hear_every_change(backend: str, opener: Opener) -> None:
    writer, listener = opener(), opener()
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await listener.listening()
    await writer.save_provider(SPEC)
    await writer.delete_provider(SPEC.name)
    await writer.delete_provider(SPEC.name)  # nothing removed: nothing announced
    if backend in SHARED_FEED:
        assert await heard_after(heard, 2) == [ProviderChange(SPEC.name, SPEC),
                                               ProviderChange(SPEC.name, None)]
    else:  # a process-local store: another handle is a later run, told nothing live
        assert not listener.shared
        assert await heard_after(heard, 1, seconds=0.2) == []
    await asyncio.sleep(0.1)
    assert len(heard) == (2 if backend in SHARED_FEED else 0)
    await writer.aclose()
    await listener.aclose()


async def test_a_change_between_load_and_subscribe_is_reported(backend: str,
                                                               opener: Opener) -> None:
    writer, listener = opener(), opener()
    assert await listener.load_providers() == ()
    await writer.save_provider(SPEC)  # before the listener follows the feed
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await listener.listening()
    if backend in SHARED_FEED:
        assert await heard_after(heard, 1) == [ProviderChange(SPEC.name, SPEC)]
    else:
        assert await heard_after(heard, 1, seconds=0.2) == []
    await writer.aclose()
    await listener.aclose()
