"""The cache package: key canonicalization, the memory LRU, the codec, policy, capture."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provider_router import domain as d
from provider_router.cache import codec, policy
from provider_router.cache.base import CachedAnswer
from provider_router.cache.key import cache_key, cache_scope
from provider_router.cache.memory import MemoryCache
from provider_router.cache.replay import StreamCapture, to_events
from provider_router.cache.settings import CacheSettings, parse_cache_settings
from provider_router.errors import ConfigError

TARGET = d.RouteTarget("openai", "gpt-4o")


def _request(text: str = "hi", **changes: object) -> d.ChatRequest:
    request = d.ChatRequest(messages=(d.ChatMessage(d.Role.USER, text),),
                            routing=d.RoutingOptions(model="chat"),
                            params=d.GenerationParams(temperature=0.0))
    return replace(request, **changes)  # type: ignore[arg-type]


def _key(request: d.ChatRequest, target: d.RouteTarget = TARGET) -> str:
    return cache_key(request, target, cache_scope(request))


def test_key_is_a_sha256_hex_and_stable() -> None:
    key = _key(_request())
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == _key(_request())


@pytest.mark.parametrize("change", [
    {"messages": (d.ChatMessage(d.Role.USER, "hello"),)},
    {"messages": (d.ChatMessage(d.Role.SYSTEM, "hi"),)},
    {"params": d.GenerationParams(temperature=0.0, max_tokens=10)},
    {"params": d.GenerationParams(temperature=0.5)},
    {"params": d.GenerationParams(temperature=0.0, stop=("x",))},
    {"params": d.GenerationParams(temperature=0.0, seed=1)},
    {"routing": d.RoutingOptions(model="other")},
    {"tenant": "acme"},
    {"tools": (d.ToolDefinition("lookup"),)},
    {"tool_choice": d.ToolChoice(d.ToolChoiceMode.NONE)},
    {"response_format": d.ResponseFormat(d.ResponseFormatType.JSON)},
])
def test_everything_that_decides_the_answer_is_in_the_key(change: dict[str, object]) -> None:
    assert _key(_request(**change)) != _key(_request())


def test_the_resolved_target_is_in_the_key() -> None:
    assert _key(_request(), d.RouteTarget("openai", "gpt-4o-mini")) != _key(_request())
    assert _key(_request(), d.RouteTarget("azure", "gpt-4o")) != _key(_request())


def test_what_does_not_decide_the_answer_is_not_in_the_key() -> None:
    base = _key(_request())
    assert _key(_request(metadata={"trace": "1"})) == base
    # A tenant attribute is the caller's word, not its identity: it does not scope answers.
    assert _key(_request(routing=d.RoutingOptions(model="chat", attributes={"tenant": "x"}))
                ) == base
    assert _key(_request(stream=True)) == base
    routing = d.RoutingOptions(model="chat", strategy=d.Strategy.COST, prefer_providers=("x",),
                               cache=d.CacheMode.READ, cache_ttl_s=5)
    assert _key(_request(routing=routing)) == base


def test_json_schema_key_order_does_not_matter() -> None:
    one = d.ToolDefinition("f", parameters={"type": "object", "properties": {"a": {}}})
    two = d.ToolDefinition("f", parameters={"properties": {"a": {}}, "type": "object"})
    assert _key(_request(tools=(one,))) == _key(_request(tools=(two,)))


def test_inline_images_are_keyed_by_content() -> None:
    def with_image(data: bytes) -> d.ChatRequest:
        part = d.ImagePart(data=data, mime_type="image/png")
        return _request(messages=(d.ChatMessage(d.Role.USER, parts=(part,)),))
    assert _key(with_image(b"one")) != _key(with_image(b"two"))
    assert _key(with_image(b"one")) == _key(with_image(b"one"))


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_entries_expire_on_the_clock() -> None:
    clock = Clock()
    evicted: list[str] = []
    cache = MemoryCache(1000, clock, evicted.append)
    await cache.set("k", b"v", ttl_s=10)
    clock.now += 9.9
    assert await cache.get("k") == b"v"
    clock.now += 0.1
    assert await cache.get("k") is None
    assert evicted == ["expired"] and len(cache) == 0 and cache.size == 0


async def test_memory_evicts_least_recently_used_by_bytes() -> None:
    evicted: list[str] = []
    cache = MemoryCache(30, on_evict=evicted.append)  # each entry: 1 + 9 = 10 bytes
    for key in "abc":
        await cache.set(key, b"x" * 9, 60)
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.set("d", b"x" * 9, 60)
    assert await cache.get("b") is None
    assert [await cache.get(k) is not None for k in "acd"] == [True, True, True]
    assert evicted == ["size"] and cache.size == 30


async def test_memory_never_stores_a_value_larger_than_the_budget() -> None:
    cache = MemoryCache(10)
    await cache.set("a", b"123", 60)
    await cache.set("b", b"x" * 20, 60)
    assert await cache.get("b") is None and await cache.get("a") == b"123"


async def test_memory_replacing_a_key_keeps_the_size_right() -> None:
    cache = MemoryCache(100)
    await cache.set("a", b"12345", 60)
    await cache.set("a", b"12", 60)
    assert cache.size == 3 and await cache.get("a") == b"12"


ANSWER = CachedAnswer("openai", "gpt-4o-2024", "gpt-4o", ("Hel", "lo"), d.FinishReason.STOP,
                      d.Usage(3, 2, 5), (d.ToolCall("c1", "f", "{}"),), "resp-1", 0.5)


def test_codec_round_trips() -> None:
    assert codec.decode(codec.encode(ANSWER)) == ANSWER


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"v": 99}', b'{"v": 1}'])
def test_codec_reads_damaged_or_foreign_entries_as_misses(data: bytes) -> None:
    assert codec.decode(data) is None


def test_policy_temperature_rule() -> None:
    settings = CacheSettings(enabled=True)
    assert policy.request_refusal(_request(), settings) == ""
    unset = _request(params=d.GenerationParams())
    warm = _request(params=d.GenerationParams(temperature=0.2))
    assert policy.request_refusal(unset, settings) == "sampled"
    assert policy.request_refusal(warm, settings) == "sampled"
    asked = replace(warm, routing=d.RoutingOptions(cache_sampled=True))
    assert policy.request_refusal(asked, settings) == ""
    assert policy.request_refusal(unset, replace(settings, sampled=True)) == ""


def test_policy_answers_not_stored() -> None:
    settings = CacheSettings(enabled=True, max_entry_bytes=100)
    assert policy.answer_refusal(ANSWER, 10, settings) == "tool_calls"
    plain = replace(ANSWER, tool_calls=())
    assert policy.answer_refusal(plain, 10, settings) == ""
    assert policy.answer_refusal(plain, 101, settings) == "too_large"
    failed = replace(plain, finish_reason=d.FinishReason.ERROR)
    assert policy.answer_refusal(failed, 10, settings) == "finish_error"
    assert policy.answer_refusal(ANSWER, 10, replace(settings, tool_calls=True)) == ""


def test_policy_mode_and_ttl() -> None:
    settings = CacheSettings(enabled=True, mode=d.CacheMode.READ, ttl_s=60)
    assert policy.request_mode(_request(), settings) is d.CacheMode.READ
    own = _request(routing=d.RoutingOptions(cache=d.CacheMode.WRITE, cache_ttl_s=5))
    assert policy.request_mode(own, settings) is d.CacheMode.WRITE
    assert policy.ttl_s(own, settings) == 5 and policy.ttl_s(_request(), settings) == 60


def _end(attempts: tuple[d.Attempt, ...]) -> d.StreamEnded:
    return d.StreamEnded("b", "b-model", d.FinishReason.STOP, d.Usage(1, 1, 2), 0.1, attempts,
                         1.0, 0.1)


def test_capture_keeps_only_what_follows_a_restart() -> None:
    capture = StreamCapture()
    capture.add(d.StreamStarted("a", "a-model", d.Strategy.FAILOVER))
    capture.add(d.TextDelta("par"))
    capture.add(d.StreamRestarted("broke", "b", "b-model"))
    capture.add(d.TextDelta("whole"))
    capture.add(d.ToolCallDelta(0, "c1", "f", '{"a":'))
    capture.add(d.ToolCallDelta(0, arguments_fragment=" 1}"))
    attempts = (d.Attempt("a", "a-model", d.AttemptOutcome.STREAM_BROKEN),
                d.Attempt("b", "b-model", d.AttemptOutcome.SUCCESS))
    end = _end(attempts)
    assert not capture.continued(end)
    target, answer = capture.answer(end)
    assert target == d.RouteTarget("b", "b-model")
    assert answer.chunks == ("whole",)
    assert answer.tool_calls == (d.ToolCall("c1", "f", '{"a": 1}'),)


def test_capture_spots_a_continuation_across_providers() -> None:
    capture = StreamCapture()
    capture.add(d.TextDelta("par"))
    capture.add(d.TextDelta("tial"))
    attempts = (d.Attempt("a", "a-model", d.AttemptOutcome.STREAM_BROKEN),
                d.Attempt("b", "b-model", d.AttemptOutcome.SUCCESS))
    assert capture.continued(_end(attempts))


def test_replayed_events_are_start_deltas_end() -> None:
    decision = d.RouteDecision((d.RouteTarget("openai", "gpt-4o"),), d.Strategy.RULES, "r1")
    events = to_events(ANSWER, decision, 0.0)
    start, end = events[0], events[-1]
    assert isinstance(start, d.StreamStarted) and start.cached and start.rule == "r1"
    assert start.model == "gpt-4o"
    assert events[1:-1] == [d.TextDelta("Hel"), d.TextDelta("lo"),
                            d.ToolCallDelta(0, "c1", "f", "{}")]
    assert isinstance(end, d.StreamEnded) and end.cached and end.cost_usd == 0
    assert end.usage == ANSWER.usage and end.attempts == ()


def test_settings_validate_and_name_the_key() -> None:
    assert parse_cache_settings({}) == CacheSettings()
    parsed = parse_cache_settings({"cache": {"enabled": True, "mode": "read", "ttl": 5,
                                             "url": "redis://localhost:6379/0"}})
    assert parsed.mode is d.CacheMode.READ and parsed.ttl_s == 5
    for raw, key in [({"mode": "sometimes"}, "cache.mode"), ({"ttl": 0}, "cache.ttl"),
                     ({"url": "http://x"}, "cache.url"), ({"max_bytes": 0}, "cache.max_bytes"),
                     ({"colour": 1}, "cache.colour")]:
        with pytest.raises(ConfigError) as caught:
            parse_cache_settings({"cache": raw})
        assert key in caught.value.message


def test_cache_settings_come_from_the_environment_too() -> None:
    from provider_router.config import load_config

    config = load_config(None, {"PROVIDER_ROUTER_CACHE_ENABLED": "true",
                                "PROVIDER_ROUTER_CACHE_URL": "redis://cache:6379/1",
                                "PROVIDER_ROUTER_CACHE_TTL": "30"})
    assert config.cache == CacheSettings(enabled=True, url="redis://cache:6379/1", ttl_s=30)
    assert load_config(None, {}).cache.enabled is False


def test_the_answering_target_is_the_successful_attempt_wherever_it_is() -> None:
    from provider_router.cache.replay import answering_target

    attempts = (d.Attempt("a", "a-model", d.AttemptOutcome.TIMEOUT),
                d.Attempt("b", "b-model", d.AttemptOutcome.SUCCESS),
                d.Attempt("a", "a-model", d.AttemptOutcome.CANCELLED))
    assert answering_target("b", "b-model-2024", attempts) == d.RouteTarget("b", "b-model")
    assert answering_target("b", "b-model-2024", ()) == d.RouteTarget("b", "b-model-2024")
