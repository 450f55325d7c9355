"""Domain errors → google.rpc.Status: the code, ErrorInfo and the typed details."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2

from provider_router import domain as d
from provider_router import errors as e
from provider_router.api.status import DOMAIN, to_status
from provider_router.v1 import router_pb2 as pb


def test_rate_limited_carries_retry_info_and_the_attempts() -> None:
    attempt = d.Attempt("p", "m", d.AttemptOutcome.RATE_LIMITED, 0.25, 429, "slow down")
    status = to_status(e.RateLimitedError("busy", retry_after_s=1.5, attempts=(attempt,)))
    assert (status.code, status.message) == (code_pb2.RESOURCE_EXHAUSTED, "busy")
    info, retry, attempts = (error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo(),
                             pb.AttemptsDetail())
    assert len(status.details) == 3
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    assert status.details[2].Unpack(attempts)
    assert (info.reason, info.domain) == ("RATE_LIMITED", DOMAIN)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)
    assert list(attempts.attempts) == [pb.Attempt(
        provider="p", model="m", outcome=pb.ATTEMPT_OUTCOME_RATE_LIMITED, status_code=429,
        error="slow down", duration=Duration(nanos=250_000_000))]
    assert attempts.delivered_deltas == 0


def test_a_broken_stream_says_how_far_it_got_even_without_attempts() -> None:
    status = to_status(e.StreamBrokenError("cut", delivered_deltas=7))
    assert status.code == code_pb2.UNAVAILABLE
    detail = pb.AttemptsDetail()
    assert status.details[1].Unpack(detail)
    assert detail.delivered_deltas == 7 and not detail.attempts
