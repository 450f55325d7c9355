"""The response cache through the real server: OpenAI fakes upstream, every RPC over gRPC.

Each test counts the requests the fake upstream received: a hit is an answer that cost no
upstream call. Deterministic requests (temperature 0) are cached unless a test says otherwise.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from provider_router.state.redis_cache import RedisCache
from provider_router.tenants import hash_key
from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault, Script
from tests.integration.chaos import ENV, Upstream, chat, config, stream
from tests.integration.conftest import Fakes, RunningRouter, StartRouter
from tests.integration.details import violations
from tests.redis.server import RedisServer

ANSWER = "Hello, world!"
TENANT_KEYS = {"acme": "acme-key-0123456789abcdef", "globex": "globex-key-0123456789abcdef"}


def _cache_toml(**keys: object) -> str:
    values = {"enabled": True, **keys}
    lines = ["[cache]"]
    for key, value in values.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else (
            f'"{value}"' if isinstance(value, str) else str(value))
        lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


async def _router(start_router: StartRouter, fake: FakeUpstream, **cache: object
                  ) -> RunningRouter:
    toml = config([Upstream("primary", fake=fake)]) + _cache_toml(**cache)
    return await start_router(toml, env=ENV)


def _routing(mode: int = pb.CACHE_MODE_UNSPECIFIED, ttl: float | None = None,
             sampled: bool = False, tenant: str = "") -> pb.RoutingOptions:
    routing = pb.RoutingOptions(model="chat", cache=mode, cache_sampled=sampled)
    if ttl is not None:
        routing.cache_ttl.CopyFrom(Duration(nanos=int(ttl * 1e9)))
    if tenant:
        routing.attributes["tenant"] = tenant
    return routing


def _params(temperature: float | None) -> pb.GenerationParameters:
    params = pb.GenerationParameters()
    if temperature is not None:
        params.temperature = temperature
    return params


def chat_request(text: str = "Say hello", temperature: float | None = 0.0,
                 **routing: object) -> pb.ChatRequest:
    """A Chat request for the alias, deterministic unless told otherwise."""
    return pb.ChatRequest(routing=_routing(**routing),  # type: ignore[arg-type]
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)],
                          parameters=_params(temperature))


def stream_request(text: str = "Say hello", temperature: float | None = 0.0,
                   **routing: object) -> pb.StreamChatRequest:
    """The StreamChat twin of chat_request."""
    return pb.StreamChatRequest(routing=_routing(**routing),  # type: ignore[arg-type]
                                messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)],
                                parameters=_params(temperature))



def _sample(router: RunningRouter, name: str, **labels: str) -> float:
    value = router.app.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_repeated_chat_is_answered_from_the_cache(start_router: StartRouter,
                                                          fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    first, _ = await chat(router, chat_request())
    second, _ = await chat(router, chat_request())
    assert len(fake.chat_requests()) == 1
    assert not first.cached and second.cached
    assert second.message.content == first.message.content == ANSWER
    assert (second.provider, second.model) == (first.provider, first.model)
    assert second.usage == first.usage and second.usage.total_tokens == 17
    assert first.cost_usd > 0 and second.HasField("cost_usd") and second.cost_usd == 0
    assert list(second.attempts) == []
    assert second.request_id and second.request_id != first.request_id
    assert _sample(router, "provider_router_cache_lookups_total", result="miss") == 1
    assert _sample(router, "provider_router_cache_lookups_total", result="hit") == 1
    assert _sample(router, "provider_router_cache_stores_total") == 1
    assert _sample(router, "provider_router_cache_saved_usd_total") == pytest.approx(
        first.cost_usd)


async def test_a_different_question_misses(start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    await chat(router, chat_request("one"))
    other, _ = await chat(router, chat_request("two"))
    longer = chat_request("one")
    longer.parameters.max_tokens = 50
    third, _ = await chat(router, longer)
    assert not other.cached and not third.cached
    assert len(fake.chat_requests()) == 3


async def test_a_cached_stream_is_replayed_as_a_stream(start_router: StartRouter,
                                                       fakes: Fakes) -> None:
    fake = await fakes()
    fake.script = Script(chunks=("Hel", "lo", ", wor", "ld!"))
    router = await _router(start_router, fake)
    live = await stream(router, stream_request())
    replayed = await stream(router, stream_request())
    assert live.error is None and replayed.error is None
    assert len(fake.chat_requests()) == 1
    assert replayed.kinds() == live.kinds() == ["start", "delta", "delta", "delta", "delta",
                                                 "end"]
    # The same deltas, split where the provider split them.
    assert [e.delta.text for e in replayed.events[1:-1]] == ["Hel", "lo", ", wor", "ld!"]
    start, end = replayed.events[0].start, replayed.end
    assert start.cached and not live.events[0].start.cached
    assert (start.provider, start.model) == ("primary", "primary-model")
    assert end.cached and not live.end.cached
    assert end.usage == live.end.usage and end.cost_usd == 0 and list(end.attempts) == []
    assert end.finish_reason == pb.FINISH_REASON_STOP


async def test_a_unary_answer_replays_as_a_stream_and_back(start_router: StartRouter,
                                                           fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    await chat(router, chat_request("unary first"))
    replayed = await stream(router, stream_request("unary first"))
    assert replayed.end.cached and replayed.text() == ANSWER
    await stream(router, stream_request("stream first"))
    answer, _ = await chat(router, chat_request("stream first"))
    assert answer.cached and answer.message.content == ANSWER
    assert len(fake.chat_requests()) == 2


async def test_modes_off_read_write_on(start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    off = [await chat(router, chat_request(mode=pb.CACHE_MODE_OFF)) for _ in range(2)]
    assert [r.cached for r, _ in off] == [False, False]
    assert len(fake.chat_requests()) == 2  # OFF neither stored nor read
    read, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_READ))
    assert not read.cached and len(fake.chat_requests()) == 3  # nothing stored yet
    again, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_READ))
    assert not again.cached and len(fake.chat_requests()) == 4  # READ stores nothing
    writes = [await chat(router, chat_request(mode=pb.CACHE_MODE_WRITE)) for _ in range(2)]
    assert [r.cached for r, _ in writes] == [False, False]
    assert len(fake.chat_requests()) == 6  # WRITE always calls the provider
    hit, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_READ))
    assert hit.cached and len(fake.chat_requests()) == 6  # ...and stored what it got
    on, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_ON))
    assert on.cached


async def test_the_configured_mode_applies_to_requests_that_say_nothing(
        start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake, mode="off")
    for _ in range(2):
        await chat(router, chat_request())
    assert len(fake.chat_requests()) == 2
    await chat(router, chat_request(mode=pb.CACHE_MODE_ON))
    hit, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_ON))
    assert hit.cached and len(fake.chat_requests()) == 3


async def test_no_cache_without_enabled_whatever_the_request_asks(
        start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await start_router(config([Upstream("primary", fake=fake)]), env=ENV)
    for _ in range(2):
        response, _ = await chat(router, chat_request(mode=pb.CACHE_MODE_ON))
        assert not response.cached
    assert len(fake.chat_requests()) == 2
    assert router.app.cache is None


async def test_entries_expire_after_the_request_ttl(start_router: StartRouter,
                                                    fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    await chat(router, chat_request(ttl=0.2))
    hit, _ = await chat(router, chat_request(ttl=0.2))
    assert hit.cached
    await asyncio.sleep(0.5)  # past the entry's 0.2 s
    expired, _ = await chat(router, chat_request(ttl=0.2))
    assert not expired.cached and len(fake.chat_requests()) == 2
    assert _sample(router, "provider_router_cache_evictions_total", reason="expired") == 1


async def test_entries_expire_after_the_configured_ttl(start_router: StartRouter,
                                                       fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake, ttl=0.2)
    await chat(router, chat_request())
    await asyncio.sleep(0.5)
    expired, _ = await chat(router, chat_request())
    assert not expired.cached and len(fake.chat_requests()) == 2


@pytest.mark.parametrize("seconds", [0, -5, 366 * 86400, -86399999913601])
async def test_a_ttl_out_of_range_is_refused(seconds: int, start_router: StartRouter,
                                             fakes: Fakes) -> None:
    router = await _router(start_router, await fakes())
    request = chat_request()
    request.routing.cache_ttl.CopyFrom(Duration(seconds=seconds))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == {
        "routing.cache_ttl": "must be positive and at most 365 days"}


@pytest.mark.parametrize("temperature", [None, 0.7])
async def test_sampled_requests_bypass_the_cache(temperature: float | None,
                                                 start_router: StartRouter,
                                                 fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    for _ in range(2):
        response, _ = await chat(router, chat_request(temperature=temperature))
        assert not response.cached
    assert len(fake.chat_requests()) == 2
    assert _sample(router, "provider_router_cache_skips_total", reason="sampled") == 2


async def test_sampled_requests_are_cached_when_asked(start_router: StartRouter,
                                                      fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    await chat(router, chat_request(temperature=0.7, sampled=True))
    hit, _ = await chat(router, chat_request(temperature=0.7, sampled=True))
    assert hit.cached
    # Another temperature is another key.
    other, _ = await chat(router, chat_request(temperature=0.9, sampled=True))
    assert not other.cached


async def test_sampled_requests_are_cached_when_the_config_says_so(
        start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake, sampled=True)
    await chat(router, chat_request(temperature=None))
    hit, _ = await chat(router, chat_request(temperature=None))
    assert hit.cached and len(fake.chat_requests()) == 1


async def test_errors_are_never_cached(start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    fake.fail(Fault(status=400, code="invalid_request_error", message="bad request"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(chat_request(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    answer, _ = await chat(router, chat_request())
    assert not answer.cached and answer.message.content == ANSWER
    assert len(fake.chat_requests()) == 2
    assert _sample(router, "provider_router_cache_stores_total") == 1  # the answer, only


async def test_a_truncated_stream_is_never_cached(start_router: StartRouter,
                                                  fakes: Fakes) -> None:
    fake = await fakes()
    toml = config([Upstream("primary", fake=fake)], stream_recovery="fail") + _cache_toml()
    router = await start_router(toml, env=ENV)
    fake.fail(Fault(cut_after=2))  # "Hello", then the body ends without a finish
    broken = await stream(router, stream_request())
    assert broken.error is not None and broken.error.code() == grpc.StatusCode.UNAVAILABLE
    assert broken.text() == "Hello"
    whole = await stream(router, stream_request())
    assert whole.error is None and not whole.end.cached and whole.text() == ANSWER
    assert len(fake.chat_requests()) == 2
    again = await stream(router, stream_request())
    assert again.end.cached and again.text() == ANSWER  # the complete one was stored


async def test_an_abandoned_stream_is_not_cached(start_router: StartRouter,
                                                 fakes: Fakes) -> None:
    fake = await fakes()
    router = await _router(start_router, fake)
    fake.fail(Fault(chunk_delay=0.5))  # the caller leaves while the answer is still coming
    call = router.stub.StreamChat(stream_request())
    async for event in call:
        if event.WhichOneof("event") == "delta":
            break
    call.cancel()
    whole = await stream(router, stream_request())
    assert whole.error is None and not whole.end.cached
    assert len(fake.chat_requests()) == 2


async def test_tool_call_answers_are_cached_only_when_configured(
        start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    fake.script = Script(chunks=(), tool_calls=(("lookup", '{"q": "x"}'),))
    router = await _router(start_router, fake)
    for _ in range(2):
        response, _ = await chat(router, chat_request())
        assert not response.cached and response.message.tool_calls[0].name == "lookup"
    assert _sample(router, "provider_router_cache_skips_total", reason="tool_calls") == 2

    fake2 = await fakes()
    fake2.script = fake.script
    allowed = await _router(start_router, fake2, tool_calls=True)
    await stream(allowed, stream_request())
    replayed = await stream(allowed, stream_request())
    assert replayed.end.cached and len(fake2.chat_requests()) == 1
    deltas = [e.delta.tool_call_deltas[0] for e in replayed.events
              if e.WhichOneof("event") == "delta"]
    assert [(t.name, t.arguments_fragment) for t in deltas] == [("lookup", '{"q": "x"}')]
    answer, _ = await chat(allowed, chat_request())
    assert answer.cached and answer.message.tool_calls[0].arguments_json == '{"q": "x"}'


async def test_tenants_do_not_share_answers(start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    tenants = "".join(f"""
[[tenants]]
name = "{name}"
key_sha256 = ["{hash_key(key)}"]
""" for name, key in TENANT_KEYS.items())
    toml = config([Upstream("primary", fake=fake)]) + _cache_toml() + tenants
    router = await start_router(toml, env=ENV)

    async def ask(tenant: str, claimed: str = "") -> pb.ChatResponse:
        auth = (("authorization", f"Bearer {TENANT_KEYS[tenant]}"),)
        response: pb.ChatResponse = await router.stub.Chat(
            chat_request(tenant=claimed), metadata=auth, timeout=10)
        return response

    await ask("acme")
    other = await ask("globex")
    # Claiming another tenant in the routing attributes changes nothing: the key decides.
    impostor = await ask("globex", claimed="acme")
    same = await ask("acme", claimed="globex")
    assert not other.cached and impostor.cached and same.cached
    assert len(fake.chat_requests()) == 2


async def test_the_memory_cache_evicts_least_recently_used_by_bytes(
        start_router: StartRouter, fakes: Fakes) -> None:
    fake = await fakes()
    # An entry is ~260 bytes (key and JSON): room for two, not three.
    router = await _router(start_router, fake, max_bytes=700)
    for text in ("a", "b", "a", "c"):  # "a" is used again, so "b" is the oldest when c comes
        await chat(router, chat_request(text))
    assert len(fake.chat_requests()) == 3
    assert _sample(router, "provider_router_cache_evictions_total", reason="size") == 1
    a, _ = await chat(router, chat_request("a"))
    b, _ = await chat(router, chat_request("b"))
    assert a.cached and not b.cached
    assert 0 < _sample(router, "provider_router_cache_bytes") <= 700


async def test_redis_cache_is_shared_by_two_routers(start_router: StartRouter, fakes: Fakes,
                                                    redis_server: RedisServer) -> None:
    fake = await fakes()
    first = await _router(start_router, fake, url=redis_server.url)
    second = await _router(start_router, fake, url=redis_server.url)
    await chat(first, chat_request())
    hit, _ = await chat(second, chat_request())
    assert hit.cached and hit.message.content == ANSWER
    replayed = await stream(first, stream_request())
    assert replayed.end.cached
    assert len(fake.chat_requests()) == 1
    await chat(second, chat_request(ttl=0.2, text="short"))
    await asyncio.sleep(0.5)
    expired, _ = await chat(first, chat_request(ttl=0.2, text="short"))
    assert not expired.cached  # Redis expired it (PX)


async def test_an_unreachable_redis_is_a_miss_not_a_failure(
        start_router: StartRouter, fakes: Fakes, own_redis_server: RedisServer) -> None:
    fake = await fakes()
    router = await _router(start_router, fake, url=own_redis_server.url)
    own_redis_server.kill()
    for _ in range(2):
        response, _ = await chat(router, chat_request())
        assert not response.cached and response.message.content == ANSWER
    assert _sample(router, "provider_router_cache_lookups_total", result="error") == 2
    assert _sample(router, "provider_router_cache_skips_total", reason="backend_error") == 2


async def test_a_cache_on_the_state_redis_shares_the_process_connection(
        start_router: StartRouter, fakes: Fakes, redis_server: RedisServer) -> None:
    fake = await fakes()
    toml = (config([Upstream("primary", fake=fake)]) + _cache_toml(url=redis_server.url)
            + f'[state]\nurl = "{redis_server.url}"\n')
    router = await start_router(toml, env=ENV)
    link, cache = router.app.link, router.app.cache
    assert link is not None and isinstance(cache, RedisCache)
    assert cache.client is link.client
    await chat(router, chat_request())
    hit, _ = await chat(router, chat_request())
    assert hit.cached and len(fake.chat_requests()) == 1
