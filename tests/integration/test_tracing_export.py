"""Spans leave the process by OTLP, over HTTP or gRPC, as the OTEL_* variables choose.

A real collector stand-in receives them: an aiohttp server on /v1/traces for OTLP/HTTP, a
grpc.aio TraceService for OTLP/gRPC. The router is configured only through the environment
(no exporter handed in), serves one Chat, and flushes at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from provider_router.app import create_app
from provider_router.config import load_config
from provider_router.v1 import router_pb2_grpc
from tests.integration.chaos import ENV, Upstream, chat_request, config
from tests.integration.conftest import Fakes


class Collector(otlp_grpc.TraceServiceServicer):
    """Keeps every export request it receives."""

    def __init__(self) -> None:
        self.requests: list[otlp.ExportTraceServiceRequest] = []

    async def Export(self, request: otlp.ExportTraceServiceRequest, context: Any
                     ) -> otlp.ExportTraceServiceResponse:
        """The gRPC export."""
        self.requests.append(request)
        return otlp.ExportTraceServiceResponse()

    async def http_export(self, request: web.Request) -> web.Response:
        """The OTLP/HTTP export (protobuf body)."""
        assert request.content_type == "application/x-protobuf"
        self.requests.append(otlp.ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=otlp.ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def span_names(self) -> set[str]:
        """Names of every span received."""
        return {span.name for request in self.requests for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans}

    def service_names(self) -> set[str]:
        """service.name of every resource received."""
        return {attribute.value.string_value for request in self.requests
                for resource in request.resource_spans
                for attribute in resource.resource.attributes
                if attribute.key == "service.name"}


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, dict[str, str]]]:
    """A collector listening for both protocols; yields it and the endpoint per protocol."""
    sink = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", sink.http_export)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server = grpc.aio.server()
    otlp_grpc.add_TraceServiceServicer_to_server(sink, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield sink, {"http/protobuf": f"http://127.0.0.1:{http_port}",
                 "grpc": f"http://127.0.0.1:{grpc_port}"}
    await server.stop(0)
    await runner.cleanup()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_spans_reach_the_collector_over_the_chosen_protocol(
        protocol: str, collector: tuple[Collector, dict[str, str]], fakes: Fakes,
        tmp_path: Path) -> None:
    sink, endpoints = collector
    fake = await fakes()
    path = tmp_path / "config.toml"
    path.write_text(config([Upstream("primary", fake=fake)]))
    env = {**ENV, "PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp_path / "registry.json"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoints[protocol],
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_SERVICE_NAME": "router-under-test"}
    app = await create_app(load_config(path, env), env, listen="127.0.0.1:0")
    assert app.tracing is not None
    await app.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        await router_pb2_grpc.RouterServiceStub(channel).Chat(chat_request(), timeout=10)
    await app.shutdown(drain_delay_s=0, grace_s=0)  # flushes the batch exporter
    await asyncio.sleep(0)
    assert {"provider_router.v1.RouterService/Chat", "route", "chat primary-model",
            "POST"} <= sink.span_names()
    assert sink.service_names() == {"router-under-test"}
