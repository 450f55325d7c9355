"""Chaos: upstream HTTP errors and resets, for Chat and StreamChat through the real server.

Rate limits (with and without Retry-After), a 5xx once or for good, a TCP reset before the
headers, and the two request-level rejections (context length, content policy). Each test
asserts what the fake upstreams saw (how many requests, how far apart), the attempts the
router reports, and the outcome.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault
from tests.integration.chaos import (
    MODES,
    Upstream,
    answer,
    attempts_detail,
    error_reason,
    exclusion,
    failure,
    gaps,
    outcomes,
    retry_delay,
    serve,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
RATE_LIMITED = pb.ATTEMPT_OUTCOME_RATE_LIMITED
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
CONNECTION_FAILED = pb.ATTEMPT_OUTCOME_CONNECTION_FAILED
REJECTED = pb.ATTEMPT_OUTCOME_REJECTED


async def _pair(start_router: StartRouter, fakes: Fakes, **resilience: object
                ) -> tuple[RunningRouter, FakeUpstream, FakeUpstream]:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)], **resilience)
    return router, primary, backup


@pytest.mark.parametrize("mode", MODES)
async def test_429_with_retry_after_cools_the_target_while_the_fallback_serves(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    primary.fail(Fault(status=429, headers={"Retry-After": "2"}))
    got = await answer(router, mode)
    # Routed around at once: no sleeping on Retry-After while a fallback can serve.
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("backup", SUCCESS)]
    assert got.attempts[0].status_code == 429 and got.elapsed < 1.5
    # Cooling down: the next call does not even try the primary, and Route says why.
    again = await answer(router, mode)
    assert outcomes(again.attempts) == [("backup", SUCCESS)]
    assert await exclusion(router, "primary") == pb.EXCLUSION_REASON_COOLDOWN
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 2
    # Once Retry-After has passed the primary serves again.
    await asyncio.sleep(max(0.0, primary.chat_requests()[0].at + 2.1 - time.monotonic()))
    assert await exclusion(router, "primary") is None
    back = await answer(router, mode)
    assert outcomes(back.attempts) == [("primary", SUCCESS)]


@pytest.mark.parametrize("mode", MODES)
async def test_429_with_retry_after_and_no_fallback_waits_it_out_then_retries(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary)])
    primary.fail(Fault(status=429, headers={"Retry-After": "2"}))
    got = await answer(router, mode)
    seen = primary.chat_requests()
    # Two attempts, the second no sooner than Retry-After allows.
    assert len(seen) == 2
    assert gaps(seen)[0] >= 1.8
    assert got.provider == "primary" and got.text == "Hello, world!"
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("primary", SUCCESS)]


@pytest.mark.parametrize("mode", MODES)
async def test_429_retry_after_beyond_the_deadline_fails_over_at_once(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    primary.down(Fault(status=429, headers={"Retry-After": "2"}))
    got = await answer(router, mode, timeout=1.5)
    assert len(primary.chat_requests()) == 1
    assert got.provider == "backup"
    assert outcomes(got.attempts) == [("primary", RATE_LIMITED), ("backup", SUCCESS)]
    assert len(backup.chat_requests()) == 1
    assert got.elapsed < 1.0  # no sleeping on a wait that cannot fit


@pytest.mark.parametrize("mode", MODES)
async def test_429_retry_after_above_max_retry_wait_fails_over_at_once(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, max_retry_wait=1)
    primary.down(Fault(status=429, headers={"retry-after-ms": "2000"}))
    got = await answer(router, mode)
    assert len(primary.chat_requests()) == 1
    assert len(backup.chat_requests()) == 1
    assert got.provider == "backup" and got.elapsed < 1.0


@pytest.mark.parametrize("mode", MODES)
async def test_persistent_429_without_retry_after_fails_over_and_the_cooldown_backs_off(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, cooldown=0.25)
    primary.down(Fault(status=429))
    served: list[str] = []
    until = time.monotonic() + 2.2
    while time.monotonic() < until:
        got = await answer(router, mode)
        served.append(got.provider)
        await asyncio.sleep(0.03)
    # Every call was answered (by the fallback); the primary was asked again only after
    # each cooldown, and each cooldown was twice the last: 0.25, 0.5, 1 s.
    assert set(served) == {"backup"}
    seen = primary.chat_requests()
    assert 3 <= len(seen) <= 4, gaps(seen)
    assert [round(gap / 0.25) >= 2 ** i for i, gap in enumerate(gaps(seen))] == [True] * (
        len(seen) - 1), gaps(seen)
    assert len(backup.chat_requests()) == len(served)


@pytest.mark.parametrize("mode", MODES)
async def test_persistent_429_alone_backs_off_then_is_resource_exhausted(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary)],
                         retry_max_attempts=3, rate_limit_floor=0.2)
    primary.down(Fault(status=429))
    error, _ = await failure(router, mode)
    seen = primary.chat_requests()
    assert len(seen) == 3  # bounded: retry_max_attempts
    assert all(gap >= 0.19 for gap in gaps(seen))  # never a tight loop on a 429
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert outcomes(attempts_detail(error).attempts) == [("primary", RATE_LIMITED)] * 3
    # Still cooling: the next call is refused at once with the wait, without a request.
    again, elapsed = await failure(router, mode)
    assert again.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_delay(again)
    assert delay is not None and 0.0 < delay <= 4.0
    assert len(primary.chat_requests()) == 3 and elapsed < 1.0


@pytest.mark.parametrize("mode", MODES)
async def test_500_once_then_healthy_is_retried_on_the_same_provider(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    primary.fail(Fault(status=500))
    got = await answer(router, mode)
    assert len(primary.chat_requests()) == 2
    assert not backup.chat_requests()
    assert got.provider == "primary" and got.text == "Hello, world!"
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR), ("primary", SUCCESS)]
    assert got.attempts[0].status_code == 500


@pytest.mark.parametrize("mode", MODES)
async def test_persistent_503_fails_over_within_the_budget(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, retry_max_attempts=2)
    primary.down()
    got = await answer(router, mode, timeout=3.0)
    assert len(primary.chat_requests()) == 2
    assert got.provider == "backup" and len(backup.chat_requests()) == 1
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR)] * 2 + [("backup", SUCCESS)]
    assert got.elapsed < 1.5


@pytest.mark.parametrize("mode", MODES)
async def test_tcp_reset_before_headers_once_is_retried(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    primary.fail(Fault(reset_before_headers=True))
    got = await answer(router, mode)
    assert got.provider == "primary" and got.text == "Hello, world!"
    assert outcomes(got.attempts) == [("primary", CONNECTION_FAILED), ("primary", SUCCESS)]
    assert not backup.chat_requests()


@pytest.mark.parametrize("mode", MODES)
async def test_persistent_tcp_reset_fails_over(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, retry_max_attempts=2)
    primary.down(Fault(reset_before_headers=True))
    got = await answer(router, mode)
    assert len(primary.chat_requests()) == 2
    assert got.provider == "backup" and got.text == "Hello, world!"
    assert len(backup.chat_requests()) == 1
    assert outcomes(got.attempts) == [("primary", CONNECTION_FAILED)] * 2 + [("backup", SUCCESS)]


CONTEXT_LENGTH = Fault(status=400, code="context_length_exceeded",
                       message="This model's maximum context length is 1000 tokens.")


@pytest.mark.parametrize("mode", MODES)
async def test_context_length_uses_a_larger_context_fallback_without_retrying(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup, big = await fakes(), await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, context_window=1000),
        Upstream("backup", fake=backup, context_window=1000),
        Upstream("big", fake=big, context_window=200_000)])
    primary.down(CONTEXT_LENGTH)
    got = await answer(router, mode)
    assert len(primary.chat_requests()) == 1  # no same-model retry
    assert not backup.chat_requests()  # a window no larger cannot help
    assert len(big.chat_requests()) == 1
    assert got.provider == "big" and got.model == "big-model"
    assert outcomes(got.attempts) == [("primary", REJECTED), ("big", SUCCESS)]
    assert got.attempts[0].reason == "CONTEXT_LENGTH_EXCEEDED"


@pytest.mark.parametrize("mode", MODES)
async def test_context_length_without_a_larger_fallback_is_invalid_argument(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, context_window=1000),
        Upstream("backup", fake=backup, context_window=1000)])
    primary.down(CONTEXT_LENGTH)
    error, _ = await failure(router, mode)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "CONTEXT_LENGTH_EXCEEDED"
    assert "maximum context length is 1000" in (error.details() or "")
    assert len(primary.chat_requests()) == 1 and not backup.chat_requests()
    assert outcomes(attempts_detail(error).attempts) == [("primary", REJECTED)]


@pytest.mark.parametrize("mode", MODES)
async def test_content_filter_is_invalid_argument_with_the_providers_reason(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes)
    primary.down(Fault(status=400, code="content_policy_violation",
                       message="Your request was rejected by the safety system: violence"))
    error, _ = await failure(router, mode)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "CONTENT_POLICY"
    assert "rejected by the safety system: violence" in (error.details() or "")
    assert len(primary.chat_requests()) == 1
    assert not backup.chat_requests()
    assert outcomes(attempts_detail(error).attempts) == [("primary", REJECTED)]


@pytest.mark.parametrize("fault", [Fault(cut_after=0), Fault(reset_after=0)],
                         ids=["cut", "reset"])
async def test_unary_body_broken_halfway_is_never_a_truncated_success(
        fault: Fault, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, retry_max_attempts=2)
    primary.fail(fault)
    got = await answer(router, "chat")
    # Half a JSON body is a failed attempt, retried on the same provider.
    assert got.provider == "primary" and got.text == "Hello, world!"
    assert [o for _, o in outcomes(got.attempts)] == [PROVIDER_ERROR, SUCCESS]
    primary.down(fault)
    got = await answer(router, "chat")
    assert got.provider == "backup" and got.text == "Hello, world!"
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR)] * 2 + [("backup", SUCCESS)]
    assert len(backup.chat_requests()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_content_filter_with_content_policy_failover_tries_the_next_candidate(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, content_policy_failover=True)
    primary.down(Fault(status=400, code="content_policy_violation", message="flagged"))
    got = await answer(router, mode)
    assert got.provider == "backup"
    assert outcomes(got.attempts) == [("primary", REJECTED), ("backup", SUCCESS)]
    assert got.attempts[0].reason == "CONTENT_POLICY"
    assert len(primary.chat_requests()) == 1  # still no same-model retry
    assert len(backup.chat_requests()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_connection_refused_is_retried_then_fails_over(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _pair(start_router, fakes, retry_max_attempts=2)
    await primary.close()  # nothing listens on its port any more
    got = await answer(router, mode)
    assert got.provider == "backup" and got.text == "Hello, world!"
    assert outcomes(got.attempts) == [("primary", CONNECTION_FAILED)] * 2 + [("backup", SUCCESS)]
    assert "cannot connect" in got.attempts[0].error
    assert len(backup.chat_requests()) == 1
