"""HTTP connectors against real fake upstreams: framing, faults, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import pytest

from provider_router.connectors.base import Connector
from provider_router.domain import (
    FinishReason,
    ProviderKind,
    StreamEvent,
    StreamFinish,
    TextDelta,
)
from provider_router.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from provider_router.resilience.deadline import Deadline
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.base import FakeUpstream, Fault
from tests.fakes.harness import KEY, KEY_ENV, MODELS, http_spec, request, settings
from tests.unit.connectors.conftest import MakeConnector

Upstream = tuple[ProviderKind, FakeUpstream]


async def run(connector: Connector, kind: ProviderKind,
              deadline: float = 10.0) -> list[StreamEvent]:
    return [e async for e in connector.stream(request(model=MODELS[kind]),
                                              Deadline.after(deadline))]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def disconnected(fake: FakeUpstream) -> bool:
    try:
        await asyncio.wait_for(fake.disconnected.wait(), 2.0)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("fault", [
    Fault(split="bytes"), Fault(split="random"),
    Fault(split="random", crlf=True, comments=True, multiline=True),
], ids=["bytes", "random", "crlf-comments-multiline"])
async def test_stream_is_exact_across_any_framing(upstream: Upstream, connect: MakeConnector,
                                                  fault: Fault) -> None:
    kind, fake = upstream
    fake.fail(fault)
    events = await run(connect(http_spec(kind, fake)), kind)
    assert text_of(events) == "Hello, world!"
    assert [type(e) for e in events].count(StreamFinish) == 1
    assert isinstance(events[-1], StreamFinish)
    assert events[-1].finish_reason is FinishReason.STOP
    assert not events[-1].usage.estimated


async def test_malformed_chunk_is_skipped_with_a_warning(
        upstream: Upstream, connect: MakeConnector, caplog: pytest.LogCaptureFixture) -> None:
    kind, fake = upstream
    fake.fail(Fault(malformed_at=1))
    events = await run(connect(http_spec(kind, fake)), kind)
    assert isinstance(events[-1], StreamFinish)
    assert "malformed stream chunk" in caplog.text


async def test_slow_first_token_times_out_and_closes_upstream(
        upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(first_chunk_delay=2.0))
    connector = connect(http_spec(kind, fake), settings(first_token=0.3))
    with pytest.raises(ProviderTimeoutError) as caught:
        await run(connector, kind)
    assert (caught.value.phase, caught.value.timeout_s) == ("first_token", 0.3)
    assert await disconnected(fake)


async def test_pings_do_not_count_as_a_first_token(connect: MakeConnector) -> None:
    fake = await AnthropicFake(required_key=KEY).start()
    try:
        # message_start, ping and content_block_start arrive every 0.15 s, but the first
        # text delta would only come after 0.45 s.
        fake.fail(Fault(chunk_delay=0.15))
        connector = connect(http_spec(ProviderKind.ANTHROPIC, fake), settings(first_token=0.35))
        with pytest.raises(ProviderTimeoutError) as caught:
            await run(connector, ProviderKind.ANTHROPIC)
        assert caught.value.phase == "first_token"
    finally:
        await fake.close()


async def test_stall_mid_stream_is_an_idle_timeout(upstream: Upstream,
                                                   connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(stall_after=len(fake.frames({}, "m")[0]) - 1))
    connector = connect(http_spec(kind, fake), settings(idle=0.3))
    got: list[StreamEvent] = []
    with pytest.raises(ProviderTimeoutError) as caught:
        async for event in connector.stream(request(model=MODELS[kind]), Deadline.after(10)):
            got.append(event)
    assert caught.value.phase == "idle"
    assert got and not any(isinstance(e, StreamFinish) for e in got)
    assert await disconnected(fake)


async def test_slow_unary_answer_is_a_total_timeout(upstream: Upstream,
                                                    connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(headers_delay=2.0))
    connector = connect(http_spec(kind, fake), settings(total=0.3))
    with pytest.raises(ProviderTimeoutError) as caught:
        await connector.chat(request(model=MODELS[kind]), Deadline.after(10))
    assert caught.value.phase == "total"


async def test_deadline_caps_every_phase(upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(first_chunk_delay=2.0))
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderTimeoutError) as caught:
        await run(connect(http_spec(kind, fake)), kind, deadline=0.25)
    assert caught.value.phase == "total" and caught.value.timeout_s <= 0.25
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_cut_stream_raises_instead_of_finishing(upstream: Upstream,
                                                      connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(cut_after=2))
    got: list[StreamEvent] = []
    with pytest.raises(ProviderServerError, match="without terminator") as caught:
        async for event in connect(http_spec(kind, fake)).stream(
                request(model=MODELS[kind]), Deadline.after(10)):
            got.append(event)
    assert not any(isinstance(e, StreamFinish) for e in got)
    assert caught.value.retryable


async def test_missing_terminator_after_finish_reason(upstream: Upstream,
                                                      connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(omit_terminator=True))
    connector = connect(http_spec(kind, fake))
    if kind in (ProviderKind.OPENAI, ProviderKind.ANTHROPIC):
        # The finish reason (and usage) already arrived: finalize with what was seen.
        events = await run(connector, kind)
        assert isinstance(events[-1], StreamFinish)
        assert events[-1].usage.completion_tokens == 5
    else:
        # Gemini and Ollama say "finished" only in their last chunk, which is missing.
        with pytest.raises(ProviderServerError, match="without terminator"):
            await run(connector, kind)


async def test_silence_after_the_finish_reason_finalizes_at_the_idle_timeout(
        upstream: Upstream, connect: MakeConnector) -> None:
    # Everything but the terminator arrived, then the socket idles (no end of the body).
    kind, fake = upstream
    frames, _ = fake.frames({"stream_options": {"include_usage": True}}, MODELS[kind])
    fake.fail(Fault(stall_after=len(frames)))
    connector = connect(http_spec(kind, fake), settings(idle=0.2))
    if kind not in (ProviderKind.OPENAI, ProviderKind.ANTHROPIC):
        # Gemini and Ollama say "finished" only in their last chunk: nothing to finalize.
        with pytest.raises(ProviderTimeoutError, match="idle"):
            await run(connector, kind)
        return
    events = await run(connector, kind)
    assert text_of(events) == "Hello, world!"
    final = events[-1]
    assert isinstance(final, StreamFinish) and final.finish_reason is FinishReason.STOP
    assert final.usage.completion_tokens == 5
    assert await disconnected(fake)  # the idle connection is dropped, not pooled


async def test_silence_before_the_finish_reason_is_an_idle_timeout(
        upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(stall_after=2))
    connector = connect(http_spec(kind, fake), settings(first_token=0.2, idle=0.2))
    with pytest.raises(ProviderTimeoutError, match=r"(idle|first_token) timeout"):
        await run(connector, kind)


async def test_reset_mid_stream_raises(upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(reset_after=2))
    with pytest.raises(ProviderServerError, match=r"interrupted|without terminator"):
        await run(connect(http_spec(kind, fake)), kind)


async def test_error_event_mid_stream_raises(upstream: Upstream,
                                             connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(error_event_at=2))
    with pytest.raises(ProviderServerError, match="stream error"):
        await run(connect(http_spec(kind, fake)), kind)


async def test_reset_before_any_response_byte_is_a_connection_error(
        upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(reset_before_headers=True, times=2))
    connector = connect(http_spec(kind, fake))
    with pytest.raises(ProviderConnectionError):
        await connector.chat(request(model=MODELS[kind]), Deadline.after(5))
    with pytest.raises(ProviderConnectionError):
        await run(connector, kind)


async def test_connection_refused(connect: MakeConnector) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = http_spec(ProviderKind.OPENAI, None, base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ProviderConnectionError, match="cannot connect"):
        await connect(spec).chat(request(), Deadline.after(5))
    probe = await connect(spec).probe()
    assert not probe.ok and "cannot connect" in probe.detail


async def test_rate_limit_status_carries_retry_after(upstream: Upstream,
                                                     connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(status=429, headers={"Retry-After": "3"}, message="slow down", times=2))
    connector = connect(http_spec(kind, fake))
    for call in (connector.chat(request(model=MODELS[kind]), Deadline.after(5)),
                 run(connector, kind)):
        with pytest.raises(ProviderRateLimitError) as caught:
            await call
        assert caught.value.retry_after_s == 3.0
        assert caught.value.status_code == 429
        assert "slow down" in caught.value.message


async def test_caller_cancel_closes_the_upstream_at_once(upstream: Upstream,
                                                         connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(stall_after=len(fake.frames({}, "m")[0]) - 1))
    connector = connect(http_spec(kind, fake))
    first = asyncio.Event()

    async def consume() -> None:
        async for event in connector.stream(request(model=MODELS[kind]), Deadline.after(30)):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await disconnected(fake)


async def test_consumer_that_stops_early_closes_the_upstream(upstream: Upstream,
                                                             connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(chunk_delay=0.2))
    stream = connect(http_spec(kind, fake)).stream(request(model=MODELS[kind]),
                                                   Deadline.after(30))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    assert await disconnected(fake)


async def test_connections_are_pooled_and_kept_alive(upstream: Upstream,
                                                     connect: MakeConnector) -> None:
    kind, fake = upstream
    connector = connect(http_spec(kind, fake))
    for _ in range(2):
        await connector.chat(request(model=MODELS[kind]), Deadline.after(5))
        await run(connector, kind)  # a finished stream gives its connection back too
    ports = {r.peer_port for r in fake.chat_requests()}
    assert len(fake.chat_requests()) == 4 and len(ports) == 1


async def test_probe_ok_and_bad_key(upstream: Upstream, connect: MakeConnector) -> None:
    kind, fake = upstream
    probe = await connect(http_spec(kind, fake)).probe()
    assert probe.ok and probe.latency_ms > 0
    assert fake.requests[-1].method == "GET"
    assert not any(r.method == "POST" for r in fake.requests)  # no tokens spent
    if kind is not ProviderKind.OLLAMA:  # /api/tags needs no key
        bad = await connect(http_spec(kind, fake), settings(env={"FAKE_PROVIDER_KEY": "nope" * 5})
                            ).probe()
        assert not bad.ok and "HTTP 40" in bad.detail


async def test_aclose_is_idempotent_and_final(upstream: Upstream,
                                              connect: MakeConnector) -> None:
    kind, fake = upstream
    connector = connect(http_spec(kind, fake))
    await connector.chat(request(model=MODELS[kind]), Deadline.after(5))
    await connector.aclose()
    await connector.aclose()
    with pytest.raises(ProviderUnavailableError):
        await connector.chat(request(model=MODELS[kind]), Deadline.after(5))


@pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.ANTHROPIC,
                                  ProviderKind.GEMINI], ids=lambda k: k.value)
async def test_missing_key_fails_before_any_request(kind: ProviderKind,
                                                    connect: MakeConnector) -> None:
    # Nothing listens on port 9: reaching the network would say "cannot connect" instead.
    connector = connect(http_spec(kind, None, base_url="http://127.0.0.1:9"), settings(env={}))
    with pytest.raises(ProviderUnavailableError, match=f"set {KEY_ENV}"):
        await connector.chat(request(model=MODELS[kind]), Deadline.after(5))
    probe = await connector.probe()
    assert not probe.ok and probe.detail.endswith(f"set {KEY_ENV}")


async def test_key_travels_only_in_the_provider_header(upstream: Upstream,
                                                       connect: MakeConnector) -> None:
    kind, fake = upstream
    await connect(http_spec(kind, fake)).chat(request(model=MODELS[kind]), Deadline.after(5))
    recorded = fake.chat_requests()[-1]
    header = {ProviderKind.OPENAI: "authorization", ProviderKind.ANTHROPIC: "x-api-key",
              ProviderKind.GEMINI: "x-goog-api-key", ProviderKind.OLLAMA: "authorization"}[kind]
    assert KEY in recorded.headers[header]
    assert KEY not in recorded.path + recorded.query
    assert [h for h, v in recorded.headers.items() if KEY in v] == [header]


async def test_errors_are_provider_errors_only(upstream: Upstream,
                                               connect: MakeConnector) -> None:
    kind, fake = upstream
    fake.fail(Fault(status=500, body="<html>oops</html>"))
    with pytest.raises(ProviderError):
        await connect(http_spec(kind, fake)).chat(request(model=MODELS[kind]), Deadline.after(5))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux SYN backlog")
async def test_unanswered_connect_is_a_connect_timeout(connect: MakeConnector) -> None:
    # A listener whose accept backlog is full drops further SYNs: the TCP connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(8)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        spec = http_spec(ProviderKind.OPENAI, None, base_url=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(ProviderTimeoutError) as caught:
            await connect(spec, settings(connect=0.3)).chat(request(), Deadline.after(5))
        assert (caught.value.phase, caught.value.timeout_s) == ("connect", 0.3)
    finally:
        for sock in (*fillers, listener):
            sock.close()
