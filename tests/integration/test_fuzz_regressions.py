"""Bugs the fuzzer found (tests/fuzz), each pinned: a caller's bad bytes or values are
INVALID_ARGUMENT naming the field, never INTERNAL/UNKNOWN with a server traceback."""

from __future__ import annotations

import logging

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from provider_router.validation import MAX_MODELS
from tests.integration.conftest import StartRouter
from tests.integration.details import violations

SERVICE = "/provider_router.v1.RouterService/"



def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize("payload", [b"\x00", b"\x0a\x01\xff", b"\x0b" * 200 + b"\x0c" * 200,
                                     b"\x0a\xff\xff\xff\xff\x07"])
async def test_undecodable_requests_are_invalid_argument(
        start_router: StartRouter, caplog: pytest.LogCaptureFixture, payload: bytes) -> None:
    router = await start_router()
    unary = router.channel.unary_unary(SERVICE + "Chat")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(payload, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "provider_router.v1.ChatRequest" in violations(info.value)["request"]
    stream = router.channel.unary_stream(SERVICE + "StreamChat")
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in stream(payload, timeout=5):
            pass
    assert streamed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    _no_tracebacks(caplog)


async def test_invalid_utf8_in_a_string_field_is_invalid_argument(
        start_router: StartRouter) -> None:
    router = await start_router()
    # ListProvidersRequest.names (field 1, a string) holding the byte 0xff.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.channel.unary_unary(SERVICE + "ListProviders")(b"\x0a\x01\xff", timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
async def test_non_finite_numbers_in_json_schemas_are_field_violations(
        start_router: StartRouter, caplog: pytest.LogCaptureFixture, number: float) -> None:
    router = await start_router()
    request = pb.ChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])
    request.response_format.type = pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    request.response_format.json_schema["maximum"] = number
    request.tools.add(name="f").parameters["minimum"] = number
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(request, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(info.value)) == {"response_format.json_schema", "tools[0].parameters"}
    _no_tracebacks(caplog)


@pytest.mark.parametrize(("seconds", "nanos"), [(0, -1), (0, 1_000_000_000),
                                                (253_402_300_800, 0), (-62_135_596_801, 0)])
async def test_invalid_evaluation_time_is_a_field_violation(
        start_router: StartRouter, caplog: pytest.LogCaptureFixture, seconds: int,
        nanos: int) -> None:
    router = await start_router()
    request = pb.RouteRequest()
    request.evaluation_time.seconds = seconds
    request.evaluation_time.nanos = nanos
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Route(request, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "evaluation_time" in violations(info.value)
    _no_tracebacks(caplog)


async def test_the_extremes_of_the_timestamp_range_are_accepted(
        start_router: StartRouter) -> None:
    router = await start_router()
    for seconds in (-62_135_596_800, 253_402_300_799):
        request = pb.RouteRequest()
        request.evaluation_time.seconds = seconds
        assert (await router.stub.Route(request, timeout=5)).provider == "mock"


async def test_out_of_range_durations_are_judged_not_crashed_on(
        start_router: StartRouter, caplog: pytest.LogCaptureFixture) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="odd", kind=pb.PROVIDER_KIND_MOCK, models=[pb.ModelSpec(name="m")])
    spec.timeouts.total.seconds = 10**15  # past timedelta's range
    spec.timeouts.connect.nanos = -5
    spec.mock.latency.seconds = 1
    spec.mock.latency.nanos = -2_000_000_000  # invalid Duration: signs differ
    try:
        await router.stub.Register(pb.RegisterRequest(provider=spec, validate_only=True),
                                   timeout=5)
    except grpc.aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    _no_tracebacks(caplog)


async def test_a_provider_named_many_times_is_listed_once(start_router: StartRouter) -> None:
    router = await start_router()
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(names=["mock"] * 1000),
                                              timeout=5)
    assert [p.spec.name for p in listing.providers] == ["mock"]


async def test_too_many_models_are_refused_before_conversion(start_router: StartRouter) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="big", kind=pb.PROVIDER_KIND_MOCK,
                           models=[pb.ModelSpec(name=f"m{i}") for i in range(MAX_MODELS + 1)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == {"provider.models": f"must list at most {MAX_MODELS} models"}
