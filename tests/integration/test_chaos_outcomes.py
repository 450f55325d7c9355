"""Chaos: what a failed-over or failed call reports, and rate limits across the chain.

Fail-over accounting (the answering provider and model, its usage and cost only, every
attempt in order), the error when every candidate fails (UNAVAILABLE, or RESOURCE_EXHAUSTED
with RetryInfo when all were rate limited, with every attempt in the details), and local
rate limits (`rate_limit_rpm`) skipping a provider without headroom.
"""

from __future__ import annotations

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault, Script
from tests.integration.chaos import (
    MODES,
    Upstream,
    answer,
    attempts_detail,
    cost,
    error_reason,
    failure,
    outcomes,
    retry_delay,
    serve,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
RATE_LIMITED = pb.ATTEMPT_OUTCOME_RATE_LIMITED
STREAM_BROKEN = pb.ATTEMPT_OUTCOME_STREAM_BROKEN
SKIPPED = pb.ATTEMPT_OUTCOME_SKIPPED


@pytest.mark.parametrize("mode", MODES)
async def test_fail_over_accounting_names_and_bills_only_the_answering_model(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)], retry_max_attempts=2)
    primary.down(Fault(status=503, message="upstream overloaded"))
    backup.script = Script(model="backup-model-2025-01-01", prompt_tokens=12,
                           completion_tokens=5)
    got = await answer(router, mode)
    assert got.provider == "backup"
    assert got.model == "backup-model-2025-01-01"  # the model that answered, as it said
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (12, 5)
    assert not got.usage.estimated
    # The answering model's prices, once: the failed attempts are not billed.
    assert got.cost_usd == pytest.approx(cost("backup"))
    assert outcomes(got.attempts) == [("primary", PROVIDER_ERROR), ("primary", PROVIDER_ERROR),
                                      ("backup", SUCCESS)]
    failed = got.attempts[:2]
    assert all(a.status_code == 503 and "upstream overloaded" in a.error for a in failed)
    assert [a.model for a in got.attempts] == ["primary-model", "primary-model", "backup-model"]
    assert not got.attempts[2].error and got.attempts[2].status_code == 0


async def test_a_restarted_stream_bills_only_the_attempt_that_finished(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)],
                         stream_recovery="restart")
    primary.down(Fault(cut_after=3))
    backup.script = Script(prompt_tokens=20, completion_tokens=7)
    got = await answer(router, "stream")
    assert got.provider == "backup"
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (20, 7)
    assert got.cost_usd == pytest.approx(cost("backup", 20, 7))
    assert outcomes(got.attempts) == [("primary", STREAM_BROKEN), ("backup", SUCCESS)]


@pytest.mark.parametrize("mode", MODES)
async def test_all_candidates_failing_is_unavailable_with_every_attempt(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)], retry_max_attempts=2)
    primary.down(Fault(status=503))
    backup.down(Fault(status=500))
    error, elapsed = await failure(router, mode, timeout=5.0)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error_reason(error) == "NO_PROVIDER_AVAILABLE"
    attempts = attempts_detail(error).attempts
    assert outcomes(attempts) == [("primary", PROVIDER_ERROR)] * 2 + [("backup", PROVIDER_ERROR)] * 2
    assert [a.status_code for a in attempts] == [503, 503, 500, 500]
    assert elapsed < 2.0


@pytest.mark.parametrize("mode", MODES)
async def test_all_candidates_rate_limited_is_resource_exhausted_with_retry_info(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)], max_retry_wait=1)
    primary.down(Fault(status=429, headers={"Retry-After": "30"}))
    backup.down(Fault(status=429, headers={"Retry-After": "20"}))
    error, elapsed = await failure(router, mode)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_delay(error) == pytest.approx(20.0)  # the soonest any candidate has room
    assert outcomes(attempts_detail(error).attempts) == [("primary", RATE_LIMITED),
                                                         ("backup", RATE_LIMITED)]
    assert elapsed < 1.0  # neither wait fits max_retry_wait: no sleeping


@pytest.mark.parametrize("mode", MODES)
async def test_rate_limit_rpm_skips_a_provider_without_headroom(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary, rate_limit_rpm=2),
                                        Upstream("backup", fake=backup)])
    providers = [(await answer(router, mode)).provider for _ in range(3)]
    assert providers == ["primary", "primary", "backup"]
    assert len(primary.chat_requests()) == 2 and len(backup.chat_requests()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_every_provider_at_its_local_limit_is_resource_exhausted_with_retry_info(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary, rate_limit_rpm=1),
                                        Upstream("backup", fake=backup, rate_limit_rpm=1)])
    assert (await answer(router, mode)).provider == "primary"
    assert (await answer(router, mode)).provider == "backup"
    error, elapsed = await failure(router, mode)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_delay(error)
    assert delay is not None and 50.0 < delay <= 60.0  # one request per minute refills
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 1
    assert elapsed < 1.0


TPM = 60_000  # refills 1000 tokens a second


async def _in_token_debt(start_router: StartRouter, fakes: Fakes, wait: bool, debt: int
                         ) -> tuple[RunningRouter, FakeUpstream]:
    primary = await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary, rate_limit_tpm=TPM)],
                         wait_for_capacity=wait)
    # The first answer reports `debt` tokens more than the whole bucket holds: the provider
    # has no room for debt / 1000 seconds.
    primary.script = Script(prompt_tokens=TPM, completion_tokens=debt)
    assert (await answer(router, "chat")).provider == "primary"
    primary.script = Script()
    return router, primary


@pytest.mark.parametrize("mode", MODES)
async def test_token_debt_is_resource_exhausted_with_the_refill_time(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary = await _in_token_debt(start_router, fakes, wait=False, debt=3000)
    error, elapsed = await failure(router, mode)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_delay(error)
    assert delay is not None and 2.0 < delay <= 3.0
    assert len(primary.chat_requests()) == 1 and elapsed < 1.0  # answered without waiting


@pytest.mark.parametrize("mode", MODES)
async def test_wait_for_capacity_waits_within_the_deadline_then_serves(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary = await _in_token_debt(start_router, fakes, wait=True, debt=300)
    got = await answer(router, mode, timeout=3.0)
    assert got.provider == "primary" and got.text == "Hello, world!"
    assert outcomes(got.attempts)[-1] == ("primary", SUCCESS)
    assert 0.2 <= got.elapsed < 2.0  # it waited for the refill, and no longer than needed
    assert len(primary.chat_requests()) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_wait_for_capacity_beyond_the_deadline_is_resource_exhausted_at_once(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary = await _in_token_debt(start_router, fakes, wait=True, debt=3000)
    error, elapsed = await failure(router, mode, timeout=1.5)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert elapsed < 1.0 and len(primary.chat_requests()) == 1
