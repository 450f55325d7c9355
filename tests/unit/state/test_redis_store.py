"""The redis:// store when Redis goes away and comes back (a real redis-server, killed)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import orjson
import pytest

from provider_router.domain import ModelSpec, ProviderKind, ProviderSpec, Secret
from provider_router.errors import ConfigError, StateUnavailableError
from provider_router.state.base import ProviderChange
from provider_router.state.codec import encode_spec
from provider_router.state.redis import RedisStateStore
from provider_router.state.redis_link import RedisLink
from tests.redis.server import RedisServer

ALPHA = ProviderSpec("alpha", ProviderKind.OPENAI, api_key=Secret("sk-alpha"),
                     models=(ModelSpec("gpt-4o"),))
BETA = replace(ALPHA, name="beta", api_key=Secret("sk-beta"))


async def until(condition: object, seconds: float = 10.0) -> bool:
    """Whether `condition()` became true within `seconds` (generous: the CI box is loaded)."""
    assert callable(condition)
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


async def test_writes_fail_clearly_while_redis_is_down(own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=60)
    store = RedisStateStore(link)
    await store.save_provider(ALPHA)
    own_redis_server.kill()
    with pytest.raises(StateUnavailableError) as caught:
        await store.save_provider(BETA)
    assert caught.value.reason == "STATE_BACKEND_UNAVAILABLE"
    assert own_redis_server.url in caught.value.message
    assert "registrations cannot change until it is back" in caught.value.message
    assert "sk-beta" not in caught.value.message
    with pytest.raises(StateUnavailableError):
        await store.delete_provider("alpha")
    assert not link.up
    health = await store.health()
    assert not health.ok and "unreachable" in health.detail
    own_redis_server.restart()
    assert (await store.health()).ok and link.up  # the check itself brings the link back
    await store.aclose()
    await link.aclose()


async def test_the_feed_resyncs_what_it_missed_while_redis_was_down(
        own_redis_server: RedisServer) -> None:
    writer_link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=60)
    # A watcher that never fires on its own: the test decides when the link is back.
    listener_link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=3600)
    writer, listener = RedisStateStore(writer_link), RedisStateStore(listener_link)
    await writer.save_provider(ALPHA)
    assert await listener.load_providers() == (ALPHA,)
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await listener.listening()

    own_redis_server.kill()
    assert await until(lambda: not listener_link.up)  # the subscription broke
    own_redis_server.restart()  # empty: alpha is gone, and nobody announced that
    # A change written while the listener is away, without any announcement it could hear.
    await writer_link.client.hset("provider-router:providers", "beta",
                                  orjson.dumps(encode_spec(BETA, include_secret=True)))
    assert heard == []
    assert await listener_link.check()  # back: resubscribe and reload the full set
    assert await until(lambda: len(heard) >= 2)
    assert heard == [ProviderChange("alpha", None), ProviderChange("beta", BETA)]

    await writer.save_provider(replace(ALPHA, priority=5))  # the live feed works again
    assert await until(lambda: len(heard) >= 3)
    assert heard[2] == ProviderChange("alpha", replace(ALPHA, priority=5))
    for store, link in ((writer, writer_link), (listener, listener_link)):
        await store.aclose()
        await link.aclose()


async def test_starting_while_redis_is_down_reports_everything_once_it_is_back(
        own_redis_server: RedisServer) -> None:
    seed_link = RedisLink.from_url(own_redis_server.url, None)
    own_redis_server.kill()
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    store = RedisStateStore(link)
    with pytest.raises(StateUnavailableError):
        await store.load_providers()
    heard: list[ProviderChange] = []
    store.subscribe(heard.append)
    await asyncio.wait_for(store.listening(), 10)  # returns although the feed is down
    own_redis_server.restart()
    await RedisStateStore(seed_link).save_provider(ALPHA)
    # Heard once: by the resync read or by the feed, whichever comes first, never both.
    assert await until(lambda: len(heard) >= 1)
    await asyncio.sleep(0.2)
    assert heard == [ProviderChange("alpha", ALPHA)]
    await store.aclose()
    await link.aclose()
    await seed_link.aclose()


async def test_bad_data_in_redis(redis_server: RedisServer,
                                 caplog: pytest.LogCaptureFixture) -> None:
    link = RedisLink.from_url(redis_server.url, None)
    store, other = RedisStateStore(link, "bad:"), RedisStateStore(link, "bad:")
    heard: list[ProviderChange] = []
    store.subscribe(heard.append)
    await store.listening()
    # A malformed announcement is logged and skipped; the next good one still arrives.
    await link.client.publish("bad:providers:changes", b"{not json")
    await link.client.publish("bad:providers:changes", orjson.dumps({"origin": "x"}))
    await other.save_provider(ALPHA)
    assert await until(lambda: heard == [ProviderChange("alpha", ALPHA)])
    assert "malformed change" in caplog.text
    # A corrupt registration stops a start (naming the key), like a corrupt registry file.
    await link.client.hset("bad:providers", "broken", b'{"name": "broken", "kind": "nope"}')
    with pytest.raises(ConfigError) as caught:
        await RedisStateStore(link, "bad:").load_providers()
    assert caught.value.key == "state.url" and "bad:providers[broken].kind" in str(caught.value)
    await store.aclose()
    await other.aclose()
    await link.aclose()


async def test_the_secret_is_stored_like_the_memory_stores_file(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    link = RedisLink.from_url(redis_server.url, None)
    await RedisStateStore(link, "p:").save_provider(ALPHA)
    stored = orjson.loads(await link.client.hget("p:providers", "alpha"))
    assert stored["api_key"] == "sk-alpha"  # survives a restart of every replica
    assert "sk-alpha" not in caplog.text
    await link.aclose()


async def test_a_quiet_subscription_keeps_answering_pings(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("provider_router.state.redis.KEEPALIVE_S", 0.05)
    monkeypatch.setattr("provider_router.state.redis.POLL_S", 0.02)
    link = RedisLink.from_url(redis_server.url, None)
    listener, writer = RedisStateStore(link), RedisStateStore(link)
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await listener.listening()
    pings_before = await _pings(link)
    await asyncio.sleep(0.5)  # several keepalive rounds, each answered
    assert await _pings(link) > pings_before
    assert link.up
    await writer.save_provider(ALPHA)
    assert await until(lambda: heard == [ProviderChange("alpha", ALPHA)])
    await listener.aclose()
    await link.aclose()


async def _pings(link: RedisLink) -> int:
    stats = await link.client.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


async def test_the_feed_resubscribes_when_another_user_of_the_link_saw_redis_fail(
        redis_server: RedisServer) -> None:
    # One link per process: a failure the hot path saw may have killed this subscription too
    # (a half-open connection says nothing), so the feed starts over and resyncs.
    link = RedisLink.from_url(redis_server.url, None, watch_interval_s=3600)
    listener = RedisStateStore(link)
    heard: list[ProviderChange] = []
    listener.subscribe(heard.append)
    await listener.listening()
    link.failed(ConnectionError("a command timed out elsewhere"))
    await asyncio.sleep(0.3)
    # Written without an announcement: only a resync can report it.
    await link.client.hset("provider-router:providers", "alpha",
                           orjson.dumps(encode_spec(ALPHA, include_secret=True)))
    assert heard == []
    assert await link.check()
    assert await until(lambda: heard == [ProviderChange("alpha", ALPHA)])
    await listener.aclose()
    await link.aclose()
