"""Tracing through the real server: the span tree of a failover call, traceparent joining.

The real grpc.aio server runs with an in-memory span exporter (SimpleSpanProcessor, so each
span is exported as it ends) against two real HTTP fakes: `primary` answers 500, `backup`
answers. The spans must form the tree telemetry/tracing.py documents, joined to the trace
the caller's `traceparent` names, and the provider must receive our own `traceparent`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from provider_router.app import App, create_app
from provider_router.config import load_config
from provider_router.telemetry.tracing import tracing_from_env
from provider_router.v1 import router_pb2_grpc
from tests.fakes.base import FakeUpstream, Fault
from tests.integration.chaos import ENV, Upstream, chat_request, config, stream_request
from tests.integration.conftest import Fakes

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

Traced = tuple[router_pb2_grpc.RouterServiceStub, InMemorySpanExporter, FakeUpstream,
               FakeUpstream]


@pytest.fixture
async def traced(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Callable[[], Awaitable[Traced]]]:
    """A traced router (in-memory exporter) in front of a `primary` and a `backup` fake."""
    apps: list[tuple[App, grpc.aio.Channel]] = []

    async def start() -> Traced:
        primary, backup = await fakes(), await fakes()
        path = tmp_path / "config.toml"
        path.write_text(config([Upstream("primary", fake=primary),
                                Upstream("backup", fake=backup)], retry_max_attempts=1))
        env = {**ENV, "PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp_path / "registry.json")}
        exporter = InMemorySpanExporter()
        app = await create_app(load_config(path, env), env, listen="127.0.0.1:0",
                               span_exporter=exporter)
        await app.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
        apps.append((app, channel))
        return router_pb2_grpc.RouterServiceStub(channel), exporter, primary, backup

    yield start
    for app, channel in apps:
        await channel.close()
        await app.shutdown(drain_delay_s=0, grace_s=0)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    found = [s for s in spans if s.parent is not None
             and s.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


async def test_a_failover_chat_is_one_trace_joined_to_the_callers(
        traced: Callable[[], Awaitable[Traced]]) -> None:
    stub, exporter, primary, backup = await traced()
    primary.fail(Fault(status=500))
    answer = await stub.Chat(chat_request(), timeout=10,
                             metadata=(("traceparent", TRACEPARENT),))
    assert answer.provider == "backup"

    spans = list(exporter.get_finished_spans())
    server = _one(spans, "provider_router.v1.RouterService/Chat")
    # Joined to the caller's trace, as a child of the caller's span.
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert {format(s.context.trace_id, "032x") for s in spans} == {CALLER_TRACE}
    assert server.attributes["rpc.grpc.status_code"] == "OK"
    assert server.attributes["provider_router.provider"] == "backup"
    assert server.attributes["gen_ai.response.model"] == "backup-model"
    assert server.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert server.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens

    route, first, second = _children(spans, server)
    assert route.name == "route"
    assert route.attributes["provider_router.provider"] == "primary"
    assert route.attributes["provider_router.model"] == "primary-model"
    assert route.attributes["gen_ai.request.model"] == "chat"  # the alias the caller named
    assert route.attributes["provider_router.strategy"] == "failover"
    assert route.attributes["provider_router.targets"] == 2

    assert first.name == "chat primary-model"
    assert first.attributes["provider_router.provider"] == "primary"
    assert first.attributes["gen_ai.system"] == "openai"
    assert first.attributes["provider_router.attempt.kind"] == "first"
    assert first.attributes["http.response.status_code"] == 500
    assert first.status.status_code is StatusCode.ERROR
    assert second.name == "chat backup-model"
    assert second.attributes["provider_router.attempt.kind"] == "failover"
    assert second.attributes["provider_router.attempt.after"] == first.attributes["error.type"]
    assert second.attributes["provider_router.outcome"] == "success"
    assert second.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens

    # Each attempt's HTTP call is its CLIENT child, and the provider got its traceparent.
    for attempt, fake, status in ((first, primary, 500), (second, backup, None)):
        (http,) = _children(spans, attempt)
        assert http.name == "POST" and http.kind is SpanKind.CLIENT
        assert http.attributes["server.port"] == int(fake.base_url.rsplit(":", 1)[1]
                                                     .split("/")[0])
        assert http.attributes.get("http.response.status_code") == status
        (received,) = fake.chat_requests()
        sent_trace, sent_parent = received.headers["traceparent"].split("-")[1:3]
        assert sent_trace == CALLER_TRACE
        assert sent_parent == format(http.context.span_id, "016x")


async def test_a_call_without_traceparent_starts_a_trace_and_a_stream_marks_its_first_token(
        traced: Callable[[], Awaitable[Traced]]) -> None:
    stub, exporter, _, _ = await traced()
    events = [e async for e in stub.StreamChat(stream_request(), timeout=10)]
    assert events[-1].WhichOneof("event") == "end"

    spans = list(exporter.get_finished_spans())
    server = _one(spans, "provider_router.v1.RouterService/StreamChat")
    assert server.parent is None
    assert format(server.context.trace_id, "032x") != CALLER_TRACE
    assert [e.name for e in server.events] == ["gen_ai.first_token"]
    route, attempt = _children(spans, server)
    assert route.name == "route" and attempt.name == "chat primary-model"
    assert [e.name for e in attempt.events] == ["gen_ai.first_token"]
    assert attempt.attributes["provider_router.outcome"] == "success"


async def test_a_failed_call_marks_its_server_span_with_the_code(
        traced: Callable[[], Awaitable[Traced]]) -> None:
    stub, exporter, primary, backup = await traced()
    primary.down()
    backup.down()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Chat(chat_request(), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    server = _one(list(exporter.get_finished_spans()), "provider_router.v1.RouterService/Chat")
    assert server.attributes["rpc.grpc.status_code"] == "UNAVAILABLE"
    assert server.attributes["provider_router.attempts"] == 2
    assert server.status.status_code is StatusCode.ERROR


def test_tracing_is_off_without_an_endpoint_and_when_disabled() -> None:
    assert tracing_from_env({}) is None
    assert tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                             "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                             "OTEL_TRACES_EXPORTER": "none"}) is None


def test_the_exporter_follows_the_otlp_protocol_variable() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    from provider_router.telemetry.tracing import _exporter_from_env

    http = _exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert isinstance(http, HttpExporter)
    assert http._endpoint == "http://collector:4318/v1/traces"
    grpc_exporter = _exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                                        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert isinstance(grpc_exporter, GrpcExporter)
    grpc_exporter.shutdown()


def test_a_bad_otlp_variable_is_a_config_error_naming_it() -> None:
    from provider_router.errors import ConfigError
    from provider_router.telemetry.tracing import check_tracing_env

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        check_tracing_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                           "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"})
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        check_tracing_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    check_tracing_env({})  # off: nothing to refuse


async def test_a_stream_that_fails_over_and_one_the_caller_leaves_keep_a_clean_tree(
        traced: Callable[[], Awaitable[Traced]], caplog: pytest.LogCaptureFixture) -> None:
    stub, exporter, primary, _ = await traced()
    primary.fail(Fault(status=500))
    events = [e async for e in stub.StreamChat(stream_request(), timeout=10)]
    assert events[-1].end.provider == "backup"
    spans = list(exporter.get_finished_spans())
    server = _one(spans, "provider_router.v1.RouterService/StreamChat")
    route, first, second = _children(spans, server)
    assert route.name == "route"
    assert (first.attributes["provider_router.outcome"],
            second.attributes["provider_router.outcome"]) == ("provider_error", "success")
    assert second.attributes["provider_router.attempt.kind"] == "failover"

    # A caller that hangs up mid-stream: the spans still end, nested as before.
    exporter.clear()
    primary.fail(Fault(chunk_delay=0.2))
    call = stub.StreamChat(stream_request(), timeout=10)
    async for event in call:
        if event.WhichOneof("event") == "delta":
            call.cancel()
            break
    for _ in range(100):
        if any(s.name.endswith("/StreamChat") for s in exporter.get_finished_spans()):
            break
        await asyncio.sleep(0.05)
    spans = list(exporter.get_finished_spans())
    server = _one(spans, "provider_router.v1.RouterService/StreamChat")
    assert server.attributes["rpc.grpc.status_code"] == "CANCELLED"
    (attempt,) = [s for s in _children(spans, server) if s.name.startswith("chat ")]
    assert attempt.attributes["provider_router.outcome"] in {"cancelled", "closed"}
    assert not [r for r in caplog.records if "detach" in r.getMessage().lower()]
