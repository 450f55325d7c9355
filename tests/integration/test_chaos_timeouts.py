"""Chaos: silent and slow upstreams, and the one deadline spent across the chain.

A provider that never sends headers, one that sends headers but no token, and a chain where
every candidate is silent: each is bounded by its phase timeout or its share of the deadline,
never retried on the same silent route, and the call never outlives its deadline.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import Fault
from tests.integration.chaos import (
    MODES,
    Upstream,
    answer,
    attempts_detail,
    failure,
    outcomes,
    serve,
)
from tests.integration.conftest import Fakes, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
TIMEOUT = pb.ATTEMPT_OUTCOME_TIMEOUT
SILENT = Fault(headers_delay=3600.0)
NO_TOKEN = Fault(first_chunk_delay=3600.0)


@pytest.mark.parametrize("mode", MODES)
async def test_no_response_at_all_is_bounded_by_its_deadline_share_and_not_retried(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    primary.down(SILENT)
    # 2 s deadline, one candidate after the primary, 1 s reserved for it: the silent
    # primary may hold the call for about 1 s (retry.attempt_timeout), then it fails over.
    got = await answer(router, mode, timeout=2.0)
    assert got.provider == "backup" and got.text == "Hello, world!"
    assert len(primary.chat_requests()) == 1  # never retried on the same silent route
    assert outcomes(got.attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]
    assert 0.8 <= got.elapsed < 1.8
    await asyncio.wait_for(primary.disconnected.wait(), 1.0)  # the silent request was dropped


@pytest.mark.parametrize("mode", MODES)
async def test_no_response_with_a_total_timeout_fails_over_at_that_limit(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"total": 0.4}),
        Upstream("backup", fake=backup)])
    primary.down(SILENT)
    got = await answer(router, mode, timeout=10.0)
    assert got.provider == "backup"
    assert len(primary.chat_requests()) == 1
    assert outcomes(got.attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]
    assert "total timeout" in got.attempts[0].error
    assert 0.35 <= got.elapsed < 1.2


async def test_slow_first_token_fails_over_at_the_first_token_limit(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"first_token": 0.4}),
        Upstream("backup", fake=backup)])
    primary.down(NO_TOKEN)  # headers at once, then nothing
    got = await answer(router, "stream", timeout=10.0)
    assert got.provider == "backup" and got.text == "Hello, world!"
    assert len(primary.chat_requests()) == 1
    assert outcomes(got.attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]
    assert "first_token timeout" in got.attempts[0].error
    assert 0.35 <= got.elapsed < 1.2
    # Nothing reached the caller from the primary: no restart was needed.
    assert got.streamed is not None and "restart" not in got.streamed.kinds()
    await asyncio.wait_for(primary.disconnected.wait(), 1.0)


async def test_slow_unary_answer_is_bounded_by_the_total_timeout_not_first_token(
        start_router: StartRouter, fakes: Fakes) -> None:
    # A unary answer arrives all at once: first_token does not apply, total does.
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"first_token": 0.1, "total": 1.0}),
        Upstream("backup", fake=backup)])
    primary.fail(Fault(headers_delay=0.4))
    got = await answer(router, "chat", timeout=10.0)
    assert got.provider == "primary"
    assert outcomes(got.attempts) == [("primary", SUCCESS)]


@pytest.mark.parametrize("mode", MODES)
async def test_every_candidate_silent_ends_within_the_server_deadline(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)],
                         server={"default_deadline": 1.5})
    primary.down(SILENT)
    backup.down(SILENT)
    # No gRPC deadline from the caller: the server's default one is the budget, and the
    # server itself must end the call on time, with every attempt in the details.
    error, elapsed = await failure(router, mode, timeout=None)
    assert error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    assert 1.2 <= elapsed < 1.5 + 0.3
    assert outcomes(attempts_detail(error).attempts) == [("primary", TIMEOUT),
                                                         ("backup", TIMEOUT)]
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_caller_deadline_closes_the_upstream_request(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary)])
    primary.down(SILENT if mode == "chat" else NO_TOKEN)
    error, elapsed = await failure(router, mode, timeout=0.5)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 0.5 + 0.3
    # The server gives up on the upstream request too, not minutes later.
    await asyncio.wait_for(primary.disconnected.wait(), 0.5)
