"""[server] max_message_bytes: a request over the limit is refused with RESOURCE_EXHAUSTED
before the router sees it; one under it is served."""

from __future__ import annotations

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from tests.integration.conftest import StartRouter

LIMIT = 64 * 1024


def _message(size: int) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content="x" * size)


def _chat(size: int) -> pb.ChatRequest:
    return pb.ChatRequest(messages=[_message(size)])


async def test_request_over_the_limit_is_resource_exhausted(start_router: StartRouter) -> None:
    router = await start_router(f"[server]\nmax_message_bytes = {LIMIT}\n")
    answer = await router.stub.Chat(_chat(LIMIT // 2), timeout=10)
    assert answer.provider == "mock"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat(LIMIT + 1), timeout=10)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(LIMIT) in (info.value.details() or "")  # gRPC names the limit


async def test_default_limit_takes_a_request_over_grpcs_4_mib_default(
        start_router: StartRouter) -> None:
    router = await start_router()
    channel_options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(router.target, options=channel_options) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        # 6 MiB reaches the router, which says no model has that context window.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Route(pb.RouteRequest(messages=[_message(6 * 1024 * 1024)]),
                             timeout=30)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "context_window" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Route(pb.RouteRequest(messages=[_message(33 * 1024 * 1024)]),
                             timeout=30)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
