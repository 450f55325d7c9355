"""Request conversion: the fast paths give exactly what the full conversion gives."""

from __future__ import annotations

import pytest

from provider_router import domain as d
from provider_router.api import convert
from provider_router.errors import InvalidRequestError
from provider_router.v1 import router_pb2 as pb


def _user(text: str = "hello", **fields: object) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=text, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [
    _user(),
    _user(name="alice"),
    pb.ChatMessage(role=pb.ROLE_SYSTEM, content="be brief"),
    pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="earlier answer"),
])
def test_plain_message_fast_path_equals_full_conversion(message: pb.ChatMessage) -> None:
    violations = convert.Violations()
    full = convert.message_to_domain(message, "messages[0]", violations)
    assert convert._plain_message(message) == full
    assert not violations.items


@pytest.mark.parametrize("message", [
    pb.ChatMessage(role=pb.ROLE_TOOL, content="42", tool_call_id="call-1"),
    pb.ChatMessage(role=pb.ROLE_USER, content_parts=[pb.ContentPart(text="a")]),
    pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(id="1", name="f")]),
    pb.ChatMessage(role=pb.ROLE_UNSPECIFIED, content="x"),
])
def test_messages_needing_checks_take_the_full_path(message: pb.ChatMessage) -> None:
    assert convert._plain_message(message) is None


def test_a_minimal_request_gets_the_shared_defaults() -> None:
    request = convert.chat_to_domain(
        pb.ChatRequest(messages=[_user()], routing=pb.RoutingOptions(model=" m ")), stream=True)
    assert request.routing == d.RoutingOptions(model="m")
    assert request.params == d.GenerationParams()
    assert request.messages == (d.ChatMessage(d.Role.USER, "hello"),)
    assert (request.tools, request.metadata, request.stream) == ((), {}, True)


def test_present_fields_are_converted() -> None:
    request = convert.chat_to_domain(pb.ChatRequest(
        messages=[_user()],
        routing=pb.RoutingOptions(
            model="m", labels=["a"], prefer_providers=["p"], exclude_providers=["q"],
            attributes={"tier": "gold"},
            constraints=pb.RoutingConstraints(max_cost_usd=0.5)),
        parameters=pb.GenerationParameters(temperature=0.2, max_tokens=5),
        metadata={"k": "v"}), stream=False)
    routing = request.routing
    assert (routing.labels, routing.prefer_providers) == (("a",), ("p",))
    assert routing.exclude_providers == frozenset({"q"})
    assert routing.attributes == {"tier": "gold"}
    assert routing.constraints == d.RoutingConstraints(max_cost_usd=0.5)
    assert request.params == d.GenerationParams(temperature=0.2, max_tokens=5)
    assert request.metadata == {"k": "v"}


def test_violations_still_name_their_fields() -> None:
    with pytest.raises(InvalidRequestError) as info:
        convert.chat_to_domain(pb.ChatRequest(
            messages=[_user(), pb.ChatMessage(role=pb.ROLE_TOOL, content="x"),
                      pb.ChatMessage(content="no role")],
            routing=pb.RoutingOptions(constraints=pb.RoutingConstraints(max_latency_ms=-1)),
            parameters=pb.GenerationParameters(top_p=3)), stream=False)
    fields = {v.field for v in info.value.violations}
    assert fields == {"messages[1].tool_call_id", "messages[2].role",
                      "routing.constraints.max_latency_ms", "parameters.top_p"}


@pytest.mark.parametrize("seconds", [0.0, 0.0013, 1.5, 12345.000001, -0.25, -3.5])
def test_duration_matches_the_protobuf_helper(seconds: float) -> None:
    expected = pb.Attempt().duration
    expected.FromNanoseconds(int(seconds * 1e9))
    assert convert.duration(seconds) == expected


def _response(cost: float | None) -> d.ChatResponse:
    result = d.ChatResult("m", "hi", d.FinishReason.STOP, d.Usage(1, 2, 3), (), "id")
    attempt = d.Attempt("p", "m", d.AttemptOutcome.SUCCESS, 0.25)
    return d.ChatResponse(provider="p", model="m", result=result, cost_usd=cost,
                          latency_s=0.5, attempts=(attempt,), strategy=d.Strategy.WEIGHTED,
                          rule="")


def test_chat_response_cost_is_unset_when_unknown_and_set_when_known() -> None:
    assert not convert.chat_response_to_proto(_response(None), "r").HasField("cost_usd")
    answer = convert.chat_response_to_proto(_response(0.0), "r")
    assert answer.HasField("cost_usd") and answer.cost_usd == 0.0
    assert answer.message.content == "hi" and answer.request_id == "r"
    assert answer.attempts[0].duration.nanos == 250_000_000
    assert answer.latency.nanos == 500_000_000


def test_stream_text_delta_and_end() -> None:
    delta = convert.stream_event_to_proto(d.TextDelta("tok"), "r")
    assert delta.WhichOneof("event") == "delta" and delta.delta.text == "tok"
    end = convert.stream_event_to_proto(d.StreamEnded(
        finish_reason=d.FinishReason.STOP, usage=d.Usage(1, 1, 2), cost_usd=None,
        attempts=(), provider="p", model="m", latency_s=0.1, time_to_first_token_s=0.05), "r")
    assert end.WhichOneof("event") == "end" and not end.end.HasField("cost_usd")


def test_decision_with_candidates_fallbacks_and_exclusions() -> None:
    decision = d.RouteDecision(
        targets=(d.RouteTarget("a", "m"), d.RouteTarget("b", "m"), d.RouteTarget("c", "n")),
        strategy=d.Strategy.COST, rule="cheap",
        candidates=(d.CandidateReport("a", "m", True, 1, 0.5),
                    d.CandidateReport("d", "m", False, exclusion=d.ExclusionReason.BREAKER_OPEN,
                                      detail="open")),
        notes=("resolved m",))
    answer = convert.decision_to_proto(decision)
    assert (answer.provider, answer.model, answer.rule) == ("a", "m", "cheap")
    assert answer.strategy == pb.STRATEGY_COST
    assert [(t.provider, t.model) for t in answer.fallbacks] == [("b", "m"), ("c", "n")]
    assert answer.candidates[0] == pb.CandidateReport(provider="a", model="m", eligible=True,
                                                      rank=1, score=0.5)
    assert answer.candidates[1].exclusion_reason == pb.EXCLUSION_REASON_BREAKER_OPEN
    assert answer.candidates[1].detail == "open"
    assert list(answer.notes) == ["resolved m"]


@pytest.mark.parametrize("routing", [
    pb.RoutingOptions(),
    pb.RoutingOptions(model=" m "),
    pb.RoutingOptions(model="m", affinity_key="k"),
    pb.RoutingOptions(model="m", strategy=pb.STRATEGY_COST),
    pb.RoutingOptions(model="m", capabilities=[pb.CAPABILITY_VISION]),
    pb.RoutingOptions(model="m", attributes={"a": "b"}, labels=["l"]),
    pb.RoutingOptions(model="m", prefer_providers=["p"], exclude_providers=["q"]),
    pb.RoutingOptions(constraints=pb.RoutingConstraints()),
])
def test_routing_fast_path_equals_full_conversion(routing: pb.RoutingOptions) -> None:
    fast, full = convert.Violations(), convert.Violations()
    assert convert.routing_to_domain(routing, fast) == convert._routing(routing, full)
    assert not fast.items and not full.items


def test_absent_routing_is_the_default() -> None:
    request = convert.chat_to_domain(pb.ChatRequest(messages=[_user()]), stream=False)
    assert request.routing == d.RoutingOptions()


def test_optional_sub_messages_are_converted_when_present() -> None:
    request = convert.chat_to_domain(pb.StreamChatRequest(
        messages=[_user()],
        tools=[pb.Tool(name="f", description="d")],
        tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED),
        response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON)), stream=True)
    assert request.tools == (d.ToolDefinition("f", "d", {}),)
    assert request.tool_choice == d.ToolChoice(d.ToolChoiceMode.REQUIRED)
    assert request.response_format == d.ResponseFormat(d.ResponseFormatType.JSON)
    assert request.params == d.GenerationParams()


def test_violations_keep_their_order_across_sub_messages() -> None:
    with pytest.raises(InvalidRequestError) as info:
        convert.chat_to_domain(pb.ChatRequest(
            messages=[pb.ChatMessage(content="no role")],
            routing=pb.RoutingOptions(model="m", strategy=99),  # type: ignore[arg-type]
            parameters=pb.GenerationParameters(max_tokens=0),
            tools=[pb.Tool()],
            tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NAMED),
            response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA)),
            stream=False)
    assert [v.field for v in info.value.violations] == [
        "messages[0].role", "routing.strategy", "parameters.max_tokens", "tools[0].name",
        "tool_choice.name", "response_format.json_schema"]



def test_fallbacks_become_targets_in_order() -> None:
    request = convert.chat_to_domain(pb.ChatRequest(
        messages=[_user()], routing=pb.RoutingOptions(model="a", fallbacks=[
            pb.RouteTarget(provider="backup", model="x"),
            pb.RouteTarget(provider=" other ", model="org/model:tag")])), stream=False)
    assert request.routing.fallbacks == (d.RouteTarget("backup", "x"),
                                         d.RouteTarget("other", "org/model:tag"))


def test_bad_fallbacks_name_each_field() -> None:
    with pytest.raises(InvalidRequestError) as info:
        convert.route_to_domain(pb.RouteRequest(routing=pb.RoutingOptions(fallbacks=[
            pb.RouteTarget(provider="ok", model="m"),
            pb.RouteTarget(provider="", model="m"),
            pb.RouteTarget(provider="Bad Name", model=""),
            pb.RouteTarget(provider="ok", model="two words")])))
    assert [v.field for v in info.value.violations] == [
        "routing.fallbacks[1].provider", "routing.fallbacks[2].provider",
        "routing.fallbacks[2].model", "routing.fallbacks[3].model"]


def test_too_many_fallbacks_are_refused() -> None:
    targets = [pb.RouteTarget(provider="p", model=f"m{i}") for i in range(17)]
    with pytest.raises(InvalidRequestError) as info:
        convert.route_to_domain(pb.RouteRequest(routing=pb.RoutingOptions(fallbacks=targets)))
    assert [v.field for v in info.value.violations] == ["routing.fallbacks"]
