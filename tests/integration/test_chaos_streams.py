"""Chaos: streams that break mid-answer, under each `[resilience] stream_recovery` policy.

A cut (clean end of the body without the finish event), a stall (socket open, nothing more),
an in-stream error event, a malformed chunk and a missing terminator. The rule under test:
never a truncated answer ending with OK. With `restart` the caller gets a restart event then
the whole answer from the fallback; with `continue` the fallback (an Anthropic fake, which
accepts an assistant prefill) continues seamlessly; with `fail` the stream ends UNAVAILABLE
saying how many deltas were delivered.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault, Script
from tests.integration.chaos import (
    Upstream,
    attempts_detail,
    error_reason,
    outcomes,
    serve,
    stream,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
BROKEN = pb.ATTEMPT_OUTCOME_STREAM_BROKEN
REJECTED = pb.ATTEMPT_OUTCOME_REJECTED
ANSWER = "Hello, world!"
# OpenAI fake frames: role chunk, "Hello", ", ", "world", "!", finish, usage, [DONE].
CUT = Fault(cut_after=2)  # the caller got "Hello", then the body ended cleanly
STALL = Fault(stall_after=2)  # the caller got "Hello", then silence
# The caller got "Hello", then an error event (a chunk delay keeps them in separate reads).
ERROR_EVENT = Fault(error_event_at=2, chunk_delay=0.02)
BREAKS = {"cut": CUT, "stall": STALL, "error_event": ERROR_EVENT}


async def _broken_pair(start_router: StartRouter, fakes: Fakes, policy: str,
                       backup_kind: str = "openai"
                       ) -> tuple[RunningRouter, FakeUpstream, FakeUpstream]:
    primary, backup = await fakes(), await fakes(backup_kind)
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"idle": 0.3}),
        Upstream("backup", kind=backup_kind, fake=backup)], stream_recovery=policy)
    return router, primary, backup


def _messages(fake: FakeUpstream, index: int) -> list[dict[str, object]]:
    body = fake.chat_requests()[index].body
    assert body is not None
    messages = body["messages"]
    assert isinstance(messages, list)
    return messages


@pytest.mark.parametrize("break_", sorted(BREAKS))
async def test_restart_policy_sends_restart_then_the_whole_answer(
        break_: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _broken_pair(start_router, fakes, "restart")
    primary.down(BREAKS[break_])
    got = await stream(router)
    assert got.error is None, got.error
    assert got.kinds() == ["start", "delta", "restart", *["delta"] * 4, "end"]
    assert got.text() == "Hello" + ANSWER
    assert got.text_after_restart() == ANSWER
    restart = got.events[2].restart
    assert (restart.provider, restart.model) == ("backup", "backup-model")
    assert "primary" in restart.reason
    end = got.end
    assert end.provider == "backup"
    assert outcomes(end.attempts) == [("primary", BROKEN), ("backup", SUCCESS)]
    assert len(primary.chat_requests()) == 1  # no same-provider retry after deltas went out
    assert [m["role"] for m in _messages(backup, 0)] == ["user"]  # from scratch
    assert got.elapsed < 1.5


@pytest.mark.parametrize("break_", sorted(BREAKS))
async def test_continue_policy_continues_seamlessly_on_a_prefill_fallback(
        break_: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _broken_pair(start_router, fakes, "continue", "anthropic")
    primary.down(BREAKS[break_])
    backup.script = Script(chunks=(", ", "world", "!"))  # the rest of the answer
    got = await stream(router)
    assert got.error is None, got.error
    assert got.kinds() == ["start", *["delta"] * 4, "end"]  # no restart event
    assert got.text() == ANSWER
    end = got.end
    assert end.provider == "backup" and end.model == "backup-model"
    assert outcomes(end.attempts) == [("primary", BROKEN), ("backup", SUCCESS)]
    # The fallback was asked to continue the partial answer (assistant prefill).
    last = _messages(backup, 0)[-1]
    assert last["role"] == "assistant"
    assert last["content"] == [{"type": "text", "text": "Hello"}]


async def test_continue_policy_restarts_when_the_fallback_rejects_the_prefill(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _broken_pair(start_router, fakes, "continue", "anthropic")
    primary.down(CUT)
    backup.fail(Fault(status=400, code="invalid_request_error",
                      message="assistant prefill is not supported for this model"))
    got = await stream(router)
    assert got.error is None, got.error  # the rejection is not the final word
    assert got.kinds() == ["start", "delta", "restart", *["delta"] * 4, "end"]
    assert got.text_after_restart() == ANSWER
    assert "refused continuation" in got.events[2].restart.reason
    assert outcomes(got.end.attempts) == [("primary", BROKEN), ("backup", REJECTED),
                                          ("backup", SUCCESS)]
    assert _messages(backup, 0)[-1]["role"] == "assistant"  # the continuation, refused
    assert [m["role"] for m in _messages(backup, 1)] == ["user"]  # then from scratch


async def test_continue_policy_restarts_on_a_fallback_without_prefill(
        start_router: StartRouter, fakes: Fakes) -> None:
    # OpenAI answers a trailing assistant message anew instead of continuing it.
    router, primary, backup = await _broken_pair(start_router, fakes, "continue", "openai")
    primary.down(CUT)
    got = await stream(router)
    assert got.kinds() == ["start", "delta", "restart", *["delta"] * 4, "end"]
    assert got.text_after_restart() == ANSWER
    assert [m["role"] for m in _messages(backup, 0)] == ["user"]


@pytest.mark.parametrize("break_", sorted(BREAKS))
async def test_fail_policy_ends_unavailable_with_the_delivered_count(
        break_: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _broken_pair(start_router, fakes, "fail")
    primary.down(BREAKS[break_])
    got = await stream(router)
    assert got.error is not None and got.error.code() is grpc.StatusCode.UNAVAILABLE
    assert got.kinds() == ["start", "delta"]  # and never an end event
    assert error_reason(got.error) == "STREAM_BROKEN"
    detail = attempts_detail(got.error)
    assert detail.delivered_deltas == 1
    assert outcomes(detail.attempts) == [("primary", BROKEN)]
    assert not backup.chat_requests()


@pytest.mark.parametrize("policy", ["restart", "continue"])
async def test_a_break_with_no_fallback_left_is_never_a_truncated_success(
        policy: str, start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, backup = await _broken_pair(start_router, fakes, policy)
    primary.down(CUT)
    backup.down(CUT)
    got = await stream(router)
    assert got.error is not None and got.error.code() is grpc.StatusCode.UNAVAILABLE
    assert "end" not in got.kinds()
    detail = attempts_detail(got.error)
    assert detail.delivered_deltas >= 1
    assert outcomes(detail.attempts) == [("primary", BROKEN), ("backup", BROKEN)]


async def test_a_stalled_stream_is_dropped_upstream(
        start_router: StartRouter, fakes: Fakes) -> None:
    router, primary, _ = await _broken_pair(start_router, fakes, "restart")
    primary.down(STALL)
    got = await stream(router)
    assert got.error is None
    assert "idle timeout" in got.end.attempts[0].error
    await asyncio.wait_for(primary.disconnected.wait(), 1.0)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_malformed_chunk_is_skipped_and_the_stream_completes(
        kind: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes(kind)
    router = await serve(start_router, [Upstream("primary", kind=kind, fake=primary)])
    primary.fail(Fault(malformed_at=3))
    got = await stream(router)
    assert got.error is None and got.text() == ANSWER
    assert outcomes(got.end.attempts) == [("primary", SUCCESS)]
    assert (got.end.usage.prompt_tokens, got.end.usage.completion_tokens) == (12, 5)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_missing_terminator_is_finalized_promptly_with_usage(
        kind: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes(kind)
    router = await serve(start_router, [
        Upstream("primary", kind=kind, fake=primary, timeouts={"idle": 5.0})])
    primary.fail(Fault(omit_terminator=True))
    got = await stream(router)
    assert got.error is None and got.text() == ANSWER
    assert got.end.finish_reason == pb.FINISH_REASON_STOP
    assert (got.end.usage.prompt_tokens, got.end.usage.completion_tokens) == (12, 5)
    assert not got.end.usage.estimated
    assert got.elapsed < 1.0  # the end of the body finalizes it: no wait for an idle timeout


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_missing_terminator_on_an_open_connection_is_finalized_not_broken(
        kind: str, start_router: StartRouter, fakes: Fakes) -> None:
    # The finish reason and usage arrived, then the connection idles without its terminator
    # (or the end of the body): the answer is complete, so the idle timeout finalizes it.
    primary, backup = await fakes(kind), await fakes()
    router = await serve(start_router, [
        Upstream("primary", kind=kind, fake=primary, timeouts={"idle": 0.3}),
        Upstream("backup", fake=backup)])
    frames, _ = primary.frames({"stream_options": {"include_usage": True}}, "m")
    primary.fail(Fault(stall_after=len(frames)))
    got = await stream(router)
    assert got.error is None, got.error
    assert got.kinds() == ["start", *["delta"] * 4, "end"]
    assert got.end.provider == "primary"
    assert (got.end.usage.prompt_tokens, got.end.usage.completion_tokens) == (12, 5)
    assert not backup.chat_requests()
    assert got.elapsed < 1.5


async def test_continue_falls_back_to_restart_when_the_continuation_fails_over(
        start_router: StartRouter, fakes: Fakes) -> None:
    # primary breaks; the Anthropic fallback that could continue is down; the third
    # candidate cannot continue a prefill (OpenAI would answer it anew): it must restart,
    # never append a whole new answer to the partial one.
    primary, backup, third = await fakes(), await fakes("anthropic"), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary), Upstream("backup", kind="anthropic", fake=backup),
        Upstream("third", fake=third)], stream_recovery="continue", retry_max_attempts=1)
    primary.down(CUT)
    backup.down()
    got = await stream(router)
    assert got.error is None, got.error
    assert got.kinds() == ["start", "delta", "restart", *["delta"] * 4, "end"]
    assert got.text_after_restart() == ANSWER
    assert got.events[2].restart.provider == "third"
    assert [m["role"] for m in _messages(third, 0)] == ["user"]
    assert outcomes(got.end.attempts) == [("primary", BROKEN),
                                          ("backup", pb.ATTEMPT_OUTCOME_PROVIDER_ERROR),
                                          ("third", SUCCESS)]


async def test_continue_on_the_mock_provider_continues_its_own_answer(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary = await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary),
        Upstream("backup", kind="mock", mock={"reply": "Hello, world!", "chunk_count": 3})],
        stream_recovery="continue")
    primary.script = Script(chunks=("[mock] Hello", ", world!"))
    primary.down(CUT)
    got = await stream(router)
    assert got.error is None, got.error
    assert "restart" not in got.kinds()
    assert got.text() == "[mock] Hello, world!"  # the rest of the answer, not all of it again
    assert got.end.provider == "backup"


async def test_continue_restarts_an_answer_broken_inside_a_tool_call(
        start_router: StartRouter, fakes: Fakes) -> None:
    # A half-delivered tool call cannot be continued by a prefill: the answer restarts.
    router, primary, backup = await _broken_pair(start_router, fakes, "continue", "anthropic")
    tool = Script(chunks=(), tool_calls=(("get_weather", '{"city": "Paris"}'),))
    primary.script = backup.script = tool
    primary.down(Fault(cut_after=3))  # role chunk, tool start, half the arguments
    got = await stream(router)
    assert got.error is None, got.error
    kinds = got.kinds()
    assert kinds[:4] == ["start", "delta", "delta", "restart"] and kinds[-1] == "end"
    assert got.end.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    fragments = [d for e in got.events[4:] if e.WhichOneof("event") == "delta"
                 for d in e.delta.tool_call_deltas]
    assert fragments[0].name == "get_weather"
    assert "".join(f.arguments_fragment for f in fragments).replace(" ", "") == (
        '{"city":"Paris"}')
    assert [m["role"] for m in _messages(backup, 0)] == ["user"]
