"""The zero-config service: the built-in mock through Route, Chat, StreamChat, ListProviders."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import StartRouter


def _chat(text: str, model: str = "") -> pb.ChatRequest:
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])


def _stream(text: str, model: str = "") -> pb.StreamChatRequest:
    return pb.StreamChatRequest(routing=pb.RoutingOptions(model=model),
                                messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])


async def test_zero_config_registers_the_labelled_mock(start_router: StartRouter) -> None:
    router = await start_router()
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert [p.spec.name for p in listing.providers] == ["mock"]
    mock = listing.providers[0]
    assert mock.spec.kind == pb.PROVIDER_KIND_MOCK
    assert mock.status.is_mock
    assert mock.status.available


async def test_env_keys_register_real_providers_instead_of_the_mock(
        start_router: StartRouter) -> None:
    router = await start_router(env={"ANTHROPIC_API_KEY": "sk-ant-test-secret-value-123"})
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    names = [p.spec.name for p in listing.providers]
    assert names == ["anthropic"]
    spec = listing.providers[0].spec
    assert spec.api_key_set and spec.api_key == ""
    assert "sk-ant-test-secret-value-123" not in str(listing)


async def test_chat_through_the_mock(start_router: StartRouter) -> None:
    router = await start_router()
    response = await router.stub.Chat(_chat("hello router"), timeout=10)
    assert response.provider == "mock"
    assert response.model == "mock-1"
    assert "hello router" in response.message.content
    assert response.message.role == pb.ROLE_ASSISTANT
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert response.usage.total_tokens == (response.usage.prompt_tokens
                                           + response.usage.completion_tokens) > 0
    assert response.usage.estimated
    assert response.HasField("cost_usd") and response.cost_usd == 0.0
    assert [a.outcome for a in response.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    assert response.request_id


async def test_stream_chat_through_the_mock(start_router: StartRouter) -> None:
    router = await start_router()
    events = [e async for e in router.stub.StreamChat(_stream("stream me please"), timeout=10)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) > 3
    assert events[0].start.provider == "mock" and events[0].start.model == "mock-1"
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    unary = await router.stub.Chat(_chat("stream me please"), timeout=10)
    assert text == unary.message.content  # deterministic mock: same answer both ways
    end = events[-1].end
    assert end.finish_reason == pb.FINISH_REASON_STOP
    assert end.usage.completion_tokens > 0
    assert end.provider == "mock"
    assert [a.outcome for a in end.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]


async def test_route_explains_without_calling(start_router: StartRouter) -> None:
    router = await start_router()
    decision = await router.stub.Route(pb.RouteRequest(), timeout=5)
    assert (decision.provider, decision.model) == ("mock", "mock-1")
    assert decision.strategy != pb.STRATEGY_UNSPECIFIED
    assert [c.provider for c in decision.candidates] == ["mock"]
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert listing.providers[0].status.request_count == 0


async def test_empty_messages_is_invalid_argument_with_field_details(
        start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(pb.ChatRequest(), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    assert "messages" in fields


async def test_bad_role_and_temperature_each_get_a_violation(start_router: StartRouter) -> None:
    router = await start_router()
    request = pb.ChatRequest(messages=[pb.ChatMessage(content="x")])
    request.parameters.temperature = 7
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(request, timeout=5)
    status = rpc_status.from_call(info.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    assert {v.field for v in bad.field_violations} == {"messages[0].role",
                                                       "parameters.temperature"}


async def test_unknown_model_is_not_found(start_router: StartRouter) -> None:
    router = await start_router()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(_chat("hi", model="nobody/none"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_register_then_unregister_at_runtime(start_router: StartRouter) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="mock-two", kind=pb.PROVIDER_KIND_MOCK,
                           models=[pb.ModelSpec(name="mock-2")])
    created = await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    assert created.created and created.changed
    again = await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    assert not again.created and not again.changed
    answer = await router.stub.Chat(_chat("hi", model="mock-two/mock-2"), timeout=5)
    assert answer.provider == "mock-two"
    await router.stub.Unregister(pb.UnregisterRequest(name="mock-two"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Unregister(pb.UnregisterRequest(name="mock-two"), timeout=5)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_request_id_is_echoed(start_router: StartRouter) -> None:
    router = await start_router()
    call = router.stub.Chat(_chat("hi"), timeout=5, metadata=(("x-request-id", "req-42"),))
    response = await call
    assert response.request_id == "req-42"
    trailing = await call.trailing_metadata()
    assert ("x-request-id", "req-42") in list(trailing)
