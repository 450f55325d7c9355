"""The access line: one JSON object per RPC with what the call came to, never its text."""

from __future__ import annotations

import io

import orjson
import pytest

from provider_router import domain as d
from provider_router.telemetry.access import CallLog, LineWriter
from provider_router.telemetry.metrics import Metrics

USAGE = d.Usage(prompt_tokens=12, completion_tokens=5, total_tokens=17)
ATTEMPTS = (
    d.Attempt("a", "m-a", d.AttemptOutcome.PROVIDER_ERROR, 0.25, 500, "a: boom", "PROVIDER_ERROR"),
    d.Attempt("b", "m-b", d.AttemptOutcome.SKIPPED, 0.0, reason="RATE_LIMITED"),
    d.Attempt("c", "m-c", d.AttemptOutcome.SUCCESS, 0.5),
)


def _answer() -> d.ChatResponse:
    result = d.ChatResult("m-c-2024", "the secret answer", d.FinishReason.STOP, USAGE)
    return d.ChatResponse("c", "m-c-2024", result, 0.0125, 0.8, ATTEMPTS, d.Strategy.FAILOVER)


def _log(out: io.BytesIO) -> CallLog:
    return CallLog(Metrics(), LineWriter(out))


def _lines(calls: CallLog, out: io.BytesIO) -> list[dict[str, object]]:
    calls.close()  # the writer thread has written everything queued
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_an_answered_call_is_one_line_with_its_provider_tokens_cost_and_attempts() -> None:
    out = io.BytesIO()
    calls = _log(out)
    calls.finished("Chat", "req-1", "OK", 0.8, _answer(), tenant="acme")
    (line,) = _lines(calls, out)
    assert line["type"] == "access" and isinstance(line["ts"], float)
    assert {k: line[k] for k in ("request_id", "trace_id", "method", "tenant", "status",
                                 "provider", "model", "attempts", "input_tokens",
                                 "output_tokens", "cost_usd", "latency_ms")} == {
        "request_id": "req-1", "trace_id": "", "method": "Chat", "tenant": "acme",
        "status": "OK", "provider": "c", "model": "m-c-2024", "attempts": 3,
        "input_tokens": 12, "output_tokens": 5, "cost_usd": 0.0125, "latency_ms": 800.0}
    assert b"secret answer" not in out.getvalue()


def test_a_failed_call_names_its_reason_and_last_provider_but_no_message() -> None:
    out = io.BytesIO()
    calls = _log(out)
    calls.finished("Chat", "req-2", "UNAVAILABLE", 0.3, attempts=ATTEMPTS[:1],
                   reason="UNAVAILABLE")
    (line,) = _lines(calls, out)
    assert line["status"] == "UNAVAILABLE" and line["error_reason"] == "UNAVAILABLE"
    assert line["provider"] == "a" and line["attempts"] == 1
    assert "input_tokens" not in line
    assert b"boom" not in out.getvalue()


def test_content_is_added_only_when_given() -> None:
    out = io.BytesIO()
    calls = _log(out)
    calls.finished("Chat", "r", "OK", 0.1, _answer(),
                   content={"prompt": [{"role": "user", "content": "hi"}],
                            "answer": "the secret answer"})
    (line,) = _lines(calls, out)
    assert line["answer"] == "the secret answer"
    assert line["prompt"] == [{"role": "user", "content": "hi"}]


def test_without_a_stream_nothing_is_written_but_metrics_count() -> None:
    metrics = Metrics()
    calls = CallLog(metrics, None)
    assert not calls.logging
    calls.finished("Chat", "r", "OK", 0.8, _answer())
    registry = metrics.registry
    assert registry.get_sample_value("provider_router_tokens_total", {
        "provider": "c", "model": "m-c-2024", "direction": "input"}) == 12
    assert registry.get_sample_value("provider_router_cost_usd_total", {
        "provider": "c", "model": "m-c-2024"}) == 0.0125
    # Upstream time of the two attempts made; the skip counts as a limiter rejection.
    assert registry.get_sample_value("provider_router_upstream_seconds_count", {
        "provider": "a", "model": "m-a"}) == 1
    assert registry.get_sample_value("provider_router_upstream_seconds_count", {
        "provider": "b", "model": "m-b"}) is None
    assert registry.get_sample_value("provider_router_limiter_rejections_total", {
        "provider": "b", "limit": "rate"}) == 1
    # Overhead: 0.8 s of latency less 0.75 s upstream.
    assert registry.get_sample_value("provider_router_overhead_seconds_sum", {
        "method": "Chat"}) == pytest.approx(0.05)



def test_the_writer_keeps_every_line_whole_and_in_order() -> None:
    out = io.BytesIO()
    calls = _log(out)
    for index in range(500):
        calls.finished("Route", f"req-{index}", "OK", 0.001)
    assert [line["request_id"] for line in _lines(calls, out)] == [
        f"req-{index}" for index in range(500)]
