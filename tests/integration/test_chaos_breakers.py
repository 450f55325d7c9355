"""Chaos: circuit breakers under a real outage, half-open trials, and caller cancellation.

A primary that is down for a while then recovers: its breaker opens (ListProviders and the
per-provider gRPC health service say so), the fallback serves every request meanwhile, and
traffic returns to the primary once a trial succeeds. A half-open breaker admits exactly
one trial among concurrent calls. A caller that hangs up closes the upstream request at
once and is not held against the provider.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault
from tests.integration.chaos import (
    MODES,
    NOT_SERVING,
    SERVING,
    Upstream,
    answer,
    attempts_detail,
    chat_request,
    eventually,
    failure,
    outcomes,
    provider_health,
    provider_status,
    serve,
    stream_request,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
SKIPPED = pb.ATTEMPT_OUTCOME_SKIPPED
RESET_S = 0.5


async def _pair(start_router: StartRouter, fakes: Fakes, **resilience: object
                ) -> tuple[RunningRouter, FakeUpstream, FakeUpstream]:
    primary, backup = await fakes(), await fakes()
    settings: dict[str, object] = {"breaker_fail_max": 2, "breaker_reset_timeout": RESET_S,
                                   "retry_max_attempts": 1, "ramp": 0}
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)],
                         **{**settings, **resilience})
    return router, primary, backup


async def _breaker(router: RunningRouter, name: str = "primary") -> int:
    return int((await provider_status(router, name)).breaker_state)


async def test_outage_opens_the_breaker_fallback_serves_then_traffic_returns(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    assert await provider_health(router, "primary") == SERVING
    primary.down()
    for mode in MODES:  # two failures: fail_max
        got = await answer(router, mode)
        assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR), ("backup", SUCCESS)]
    assert await _breaker(router) == pb.BREAKER_STATE_OPEN
    status = await provider_status(router, "primary")
    assert status.health == pb.HEALTH_STATE_UNHEALTHY
    assert await eventually(lambda: _health_is(router, "primary", NOT_SERVING))
    assert await provider_health(router, "backup") == SERVING

    # During the outage the fallback serves every request; the primary is not even tried.
    for mode in (*MODES, *MODES):
        got = await answer(router, mode)
        assert got.provider == "backup" and got.text == "Hello, world!"
        assert all(o == SKIPPED for p, o in outcomes(got.attempts) if p == "primary")
    assert len(primary.chat_requests()) == 2

    primary.recover()
    await asyncio.sleep(RESET_S + 0.1)
    got = await answer(router, "chat")  # the half-open trial, which succeeds
    assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert await _breaker(router) == pb.BREAKER_STATE_CLOSED
    assert await eventually(lambda: _health_is(router, "primary", SERVING))
    for mode in MODES:
        got = await answer(router, mode)
        assert outcomes(got.attempts) == [("primary", SUCCESS)]
    assert len(backup.chat_requests()) == 2 + 4


async def test_a_failed_trial_reopens_the_breaker(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, _ = await _pair(start_router, fakes, breaker_fail_max=1)
    primary.down()
    await answer(router, "chat")
    assert await _breaker(router) == pb.BREAKER_STATE_OPEN
    await asyncio.sleep(RESET_S + 0.1)
    got = await answer(router, "stream")  # the trial fails: open again, backup answers
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR), ("backup", SUCCESS)]
    assert await _breaker(router) == pb.BREAKER_STATE_OPEN
    got = await answer(router, "chat")
    assert outcomes(got.attempts) == [("backup", SUCCESS)]
    assert len(primary.chat_requests()) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_half_open_admits_exactly_one_trial_under_concurrent_load(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, breaker_fail_max=1)
    primary.fail(Fault(status=503))
    await answer(router, mode)
    assert await _breaker(router) == pb.BREAKER_STATE_OPEN
    await asyncio.sleep(RESET_S + 0.1)
    # The trial is slow, so every other call arrives while it is in flight.
    primary.fail(Fault(headers_delay=0.6))
    answers = await asyncio.gather(*(answer(router, mode) for _ in range(5)))
    providers = sorted(a.provider for a in answers)
    assert providers == ["backup"] * 4 + ["primary"]
    assert len(primary.chat_requests()) == 1 + 1  # the failure, then exactly one trial
    for got in answers:
        if got.provider == "backup":
            assert all(o == SKIPPED for p, o in outcomes(got.attempts) if p == "primary")
    assert await _breaker(router) == pb.BREAKER_STATE_CLOSED
    assert len(backup.chat_requests()) == 1 + 4


async def test_cancelled_stream_closes_upstream_and_is_no_breaker_failure(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, _ = await _pair(start_router, fakes, breaker_fail_max=1)
    primary.fail(Fault(chunk_delay=0.3))
    call = router.stub.StreamChat(stream_request(), timeout=10)
    kinds = []
    async for event in call:
        kinds.append(event.WhichOneof("event"))
        if kinds.count("delta") == 2:
            break
    call.cancel()
    # The upstream request is closed at once, not after the answer would have ended.
    await asyncio.wait_for(primary.disconnected.wait(), 0.5)
    await _after_cancel(router, primary)


async def test_cancelled_chat_closes_upstream_and_is_no_breaker_failure(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, _ = await _pair(start_router, fakes, breaker_fail_max=1)
    primary.fail(Fault(headers_delay=5.0))
    call = router.stub.Chat(chat_request(), timeout=10)

    async def reached_upstream() -> bool:
        return bool(primary.chat_requests())

    assert await eventually(reached_upstream)
    call.cancel()
    await asyncio.wait_for(primary.disconnected.wait(), 0.5)
    await _after_cancel(router, primary)


async def _after_cancel(router: RunningRouter, primary: FakeUpstream) -> None:
    # With fail_max = 1 a single counted failure would have opened the breaker.
    assert await _breaker(router) == pb.BREAKER_STATE_CLOSED
    status = await provider_status(router, "primary")
    assert status.error_rate == 0.0
    got = await answer(router, "stream")
    assert outcomes(got.attempts) == [("primary", SUCCESS)]


async def _health_is(router: RunningRouter, name: str, expected: int) -> bool:
    return await provider_health(router, name) == expected


@pytest.mark.parametrize("mode", MODES)
async def test_every_breaker_open_is_unavailable_at_once_without_calling_anyone(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, breaker_fail_max=1,
                                          breaker_reset_timeout=30)
    primary.down()
    backup.down()
    error, _ = await failure(router, mode)
    assert outcomes(attempts_detail(error).attempts) == [("primary", PROVIDER_ERROR),
                                                         ("backup", PROVIDER_ERROR)]
    error, elapsed = await failure(router, mode)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "breaker_open" in (error.details() or "")
    assert elapsed < 1.0
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 1


async def test_caller_errors_neither_open_nor_reset_the_breaker(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, _ = await _pair(start_router, fakes, breaker_fail_max=2)
    bad_request = Fault(status=400, code="invalid_request_error", message="bad parameter")
    primary.fail(Fault(status=503))
    await answer(router, "chat")  # one failure
    for mode in MODES:  # the request's own fault, twice: no effect on the breaker
        primary.fail(bad_request)
        error, _ = await failure(router, mode)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert await _breaker(router) == pb.BREAKER_STATE_CLOSED
    primary.fail(Fault(status=503))
    await answer(router, "stream")  # the second failure within the window opens it
    assert await _breaker(router) == pb.BREAKER_STATE_OPEN
