"""HedgeOptions → HedgePolicy: values carried over, every problem one field violation."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from provider_router import domain as d
from provider_router.api.convert import chat_to_domain
from provider_router.errors import InvalidRequestError
from provider_router.v1 import router_pb2 as pb


def _request(options: pb.HedgeOptions) -> pb.ChatRequest:
    request = pb.ChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])
    request.routing.hedge.CopyFrom(options)
    return request


def _violations(options: pb.HedgeOptions) -> dict[str, str]:
    with pytest.raises(InvalidRequestError) as caught:
        chat_to_domain(_request(options), stream=False)
    return {v.field: v.description for v in caught.value.violations}


def test_absent_leaves_the_configured_policy_in_charge() -> None:
    request = pb.ChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])
    assert chat_to_domain(request, stream=False).routing.hedge is None


def test_a_fixed_delay_and_its_options() -> None:
    options = pb.HedgeOptions(max_hedges=2, allow_tools=True)
    options.after.CopyFrom(Duration(nanos=250_000_000))
    policy = chat_to_domain(_request(options), stream=True).routing.hedge
    assert policy == d.HedgePolicy(after_s=0.25, max_hedges=2, allow_tools=True)


def test_a_percentile_alone_and_max_hedges_zero_meaning_one() -> None:
    policy = chat_to_domain(_request(pb.HedgeOptions(after_percentile=95)),
                            stream=False).routing.hedge
    assert policy == d.HedgePolicy(percentile=95.0, max_hedges=1)


def test_zero_after_races_at_once() -> None:
    options = pb.HedgeOptions()
    options.after.CopyFrom(Duration())
    assert chat_to_domain(_request(options), stream=False).routing.hedge == d.HedgePolicy(
        after_s=0.0)


def test_disabled_turns_hedging_off_whatever_else_is_set() -> None:
    policy = chat_to_domain(_request(pb.HedgeOptions(disabled=True, max_hedges=9)),
                            stream=False).routing.hedge
    assert policy == d.NO_HEDGING and not policy.enabled


def test_every_problem_is_one_violation() -> None:
    options = pb.HedgeOptions(max_hedges=3, after_percentile=100)
    options.after.CopyFrom(Duration(seconds=-2))
    assert _violations(options) == {
        "routing.hedge.after": "must be between 0 and 86400 seconds",
        "routing.hedge.after_percentile": "must be greater than 0 and less than 100",
        "routing.hedge.max_hedges": "must be 1 or 2 (0 means 1), got 3",
    }


@pytest.mark.parametrize("max_hedges", [-1, 3, 100])
def test_max_hedges_out_of_range(max_hedges: int) -> None:
    assert "routing.hedge.max_hedges" in _violations(
        pb.HedgeOptions(max_hedges=max_hedges, after_percentile=50))


def test_no_trigger_at_all() -> None:
    assert _violations(pb.HedgeOptions(max_hedges=1)) == {
        "routing.hedge": "set after, after_percentile (or both), or disabled"}


def test_a_nan_percentile() -> None:
    assert "routing.hedge.after_percentile" in _violations(
        pb.HedgeOptions(after_percentile=float("nan")))
