"""Answers built in place equal the same answers built with keyword constructors."""

from __future__ import annotations

import pytest

from provider_router import domain as d
from provider_router.api import responses
from provider_router.v1 import router_pb2 as pb

USAGE = d.Usage(1, 2, 3)


def _duration(seconds: float) -> pb.Attempt:
    expected = pb.Attempt()
    expected.duration.FromNanoseconds(int(seconds * 1e9))
    return expected


@pytest.mark.parametrize("seconds", [0.0, 1e-9, 0.0013, 0.999999999, 1.0, 2.5, 12345.000001,
                                     -0.25, -3.5])
def test_durations_match_the_helper_and_are_present_even_when_zero(seconds: float) -> None:
    attempt = d.Attempt("p", "m", d.AttemptOutcome.SUCCESS, seconds)
    result = d.ChatResult("m", "hi", d.FinishReason.STOP, USAGE)
    answer = responses.chat_response_to_proto(d.ChatResponse(
        "p", "m", result, None, seconds, (attempt,), d.Strategy.WEIGHTED), "r")
    assert answer.HasField("latency") and answer.attempts[0].HasField("duration")
    assert answer.latency == _duration(seconds).duration
    assert answer.attempts[0].duration == _duration(seconds).duration


def test_chat_tool_calls_and_rule() -> None:
    result = d.ChatResult("m", "", d.FinishReason.TOOL_CALLS, USAGE,
                          (d.ToolCall("1", "f", "{}"), d.ToolCall("2", "g", "")))
    answer = responses.chat_response_to_proto(d.ChatResponse(
        "p", "m", result, None, 0.5, (), d.Strategy.RULES, "cheap"), "r")
    assert list(answer.message.tool_calls) == [
        pb.ToolCall(id="1", name="f", arguments_json="{}"), pb.ToolCall(id="2", name="g")]
    assert answer.message.role == pb.ROLE_ASSISTANT and answer.rule == "cheap"


@pytest.mark.parametrize(("event", "expected"), [
    (d.TextDelta(""), pb.StreamChatResponse(delta=pb.StreamDelta())),
    (d.TextDelta("tok"), pb.StreamChatResponse(delta=pb.StreamDelta(text="tok"))),
    (d.ToolCallDelta(0), pb.StreamChatResponse(
        delta=pb.StreamDelta(tool_call_deltas=[pb.ToolCallDelta()]))),
    (d.ToolCallDelta(2, "c", "f", "{"), pb.StreamChatResponse(delta=pb.StreamDelta(
        tool_call_deltas=[pb.ToolCallDelta(index=2, id="c", name="f", arguments_fragment="{")]))),
    (d.StreamStarted("", "", d.Strategy.COST), pb.StreamChatResponse(start=pb.StreamStart(
        request_id="r", strategy=pb.STRATEGY_COST))),
    (d.StreamStarted("p", "m", d.Strategy.RULES, "x"), pb.StreamChatResponse(
        start=pb.StreamStart(provider="p", model="m", request_id="r",
                             strategy=pb.STRATEGY_RULES, rule="x"))),
    (d.StreamRestarted("", "", ""), pb.StreamChatResponse(restart=pb.StreamRestart())),
    (d.StreamRestarted("why", "p", "m"), pb.StreamChatResponse(
        restart=pb.StreamRestart(reason="why", provider="p", model="m"))),
])
def test_stream_events(event: d.RouterStreamEvent, expected: pb.StreamChatResponse) -> None:
    out = responses.stream_event_to_proto(event, "r")
    assert out == expected
    assert out.WhichOneof("event") == expected.WhichOneof("event")
    assert out.SerializeToString() == expected.SerializeToString()
