"""Hedged requests through the real server, against real HTTP fakes (routing/hedge.py).

A `primary` that is slow to answer (Chat) or to send its first token (StreamChat), and
fallbacks that answer at once, all serving the alias `chat` in a fixed failover order. No test
measures time: a hedge is told apart from ordinary failover by the attempts (HEDGE_LOST
instead of TIMEOUT) and by what each fake received. The slow upstreams wait far longer than
any call may last, so an answer from the fallback within the call proves the hedge fired.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import Fault
from tests.fakes.harness import KEY, KEY_ENV
from tests.integration.chaos import (
    ALIAS,
    MODES,
    Upstream,
    attempts_detail,
    chat,
    config,
    cost,
    eventually,
    outcomes,
    serve,
    stream,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
HEDGE_LOST = pb.ATTEMPT_OUTCOME_HEDGE_LOST
TIMEOUT = pb.ATTEMPT_OUTCOME_TIMEOUT
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
# No answer for an hour: headers never come (Chat), or no token after them (StreamChat).
SILENT = Fault(headers_delay=3600.0)
NO_TOKEN = Fault(first_chunk_delay=3600.0)
SLOW = {"chat": SILENT, "stream": NO_TOKEN}


def hedge(after: float | None = 0.2, **options: object) -> pb.HedgeOptions:
    """HedgeOptions with `after` seconds (None: unset)."""
    message = pb.HedgeOptions(**options)  # type: ignore[arg-type]
    if after is not None:
        message.after.CopyFrom(Duration(nanos=int(after * 1e9) % 10**9, seconds=int(after)))
    return message


def routing(options: pb.HedgeOptions | None, model: str = ALIAS) -> pb.RoutingOptions:
    """RoutingOptions for the alias, hedged per `options`."""
    message = pb.RoutingOptions(model=model)
    if options is not None:
        message.hedge.CopyFrom(options)
    return message


_MESSAGES = [pb.ChatMessage(role=pb.ROLE_USER, content="Say hello")]
_TOOLS = [pb.Tool(name="send_email", description="Sends an email")]


async def call(router: RunningRouter, mode: str, options: pb.HedgeOptions | None,
               timeout: float = 20.0, tools: bool = False, model: str = ALIAS
               ) -> tuple[str, list[pb.Attempt], pb.Usage, float]:
    """Chat or StreamChat that must succeed: provider, attempts, usage and cost."""
    extra = {"tools": _TOOLS} if tools else {}
    if mode == "chat":
        response, _ = await chat(router, pb.ChatRequest(
            routing=routing(options, model), messages=_MESSAGES, **extra), timeout)
        return response.provider, list(response.attempts), response.usage, response.cost_usd
    streamed = await stream(router, pb.StreamChatRequest(
        routing=routing(options, model), messages=_MESSAGES, **extra), timeout)
    assert streamed.error is None, (streamed.error, streamed.kinds())
    # Nothing of a loser reaches the caller: one start, the winner's deltas, one end.
    assert streamed.kinds().count("start") == 1 and "restart" not in streamed.kinds()
    assert streamed.text() == "Hello, world!"
    end = streamed.end
    assert streamed.events[0].start.provider == end.provider
    return end.provider, list(end.attempts), end.usage, end.cost_usd


def metric(router: RunningRouter, name: str, **labels: str) -> float:
    """A sample of the server's metrics (0 when absent)."""
    value = router.app.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.parametrize("mode", MODES)
async def test_a_slow_first_target_is_hedged_and_the_faster_one_wins(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    primary.down(SLOW[mode])
    provider, attempts, usage, cost_usd = await call(router, mode, hedge(0.2))
    assert provider == "backup"
    # Without the hedge the primary would have held the call until its share of the 20 s
    # deadline ran out and ended as TIMEOUT; it lost the race instead.
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
    lost = next(a for a in attempts if a.outcome == HEDGE_LOST)
    assert lost.reason == "HEDGE_LOST" and "backup/backup-model answered first" in lost.error
    # The loser's request was cancelled: its connection closed, so the provider stops.
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 1
    # Only the winner is charged: its usage and its price, not the loser's.
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 5)
    assert cost_usd == pytest.approx(cost("backup"))
    # The loser's spend still counts, as estimated prompt tokens (it never reported usage).
    assert metric(router, "provider_router_hedges_total", provider="backup") == 1
    assert metric(router, "provider_router_hedge_races_total", winner="hedge") == 1
    assert metric(router, "provider_router_attempts_total", provider="primary",
                  model="primary-model", outcome="hedge_lost") == 1
    estimated = metric(router, "provider_router_uncharged_tokens_total", provider="primary",
                       outcome="hedge_lost", kind="prompt", estimated="true")
    assert estimated > 0
    assert metric(router, "provider_router_uncharged_cost_usd_total", provider="primary",
                  outcome="hedge_lost") == pytest.approx(estimated * 1.0 / 1_000_000)
    assert metric(router, "provider_router_uncharged_tokens_total", provider="backup",
                  outcome="hedge_lost", kind="prompt", estimated="true") == 0
    # The loser is no longer in flight, and its cancel is neither a success nor a failure.
    status = (await router.stub.ListProviders(pb.ListProvidersRequest(names=["primary"]),
                                              timeout=5)).providers[0].status
    assert status.in_flight == 0 and status.failure_count == 0


@pytest.mark.parametrize("mode", MODES)
async def test_no_hedge_when_the_first_target_answers_in_time(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    provider, attempts, _, cost_usd = await call(router, mode, hedge(5.0))
    assert provider == "primary"
    assert outcomes(attempts) == [("primary", SUCCESS)]
    assert backup.chat_requests() == []
    assert cost_usd == pytest.approx(cost("primary"))
    assert metric(router, "provider_router_hedge_races_total", winner="primary") == 0


@pytest.mark.parametrize("mode", MODES)
async def test_the_configured_policy_hedges_unless_the_request_turns_it_off(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    upstreams = [Upstream("primary", fake=primary, timeouts={"total": 1.0}),
                 Upstream("backup", fake=backup)]
    toml = config(upstreams) + "\n[routing.hedge]\nafter = 0.2\n"
    router = await start_router(toml, env={KEY_ENV: KEY})
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, None)
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
    # Turned off for one request: plain failover after the primary's 1 s total timeout.
    provider, attempts, _, _ = await call(router, mode, pb.HedgeOptions(disabled=True))
    assert provider == "backup"
    assert outcomes(attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]


@pytest.mark.parametrize("mode", MODES)
async def test_requests_with_tools_are_hedged_only_when_allowed(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"total": 1.0}),
        Upstream("backup", fake=backup)])
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, hedge(0.2), tools=True)
    assert provider == "backup"
    assert outcomes(attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]
    provider, attempts, _, _ = await call(router, mode, hedge(0.2, allow_tools=True),
                                          tools=True)
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]


@pytest.mark.parametrize("mode", MODES)
async def test_an_open_breaker_target_is_not_hedged_to(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, broken, backup = await fakes(), await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("broken", fake=broken),
                                        Upstream("backup", fake=backup)],
                         breaker_fail_max=2, breaker_reset_timeout=600, retry_max_attempts=1)
    broken.down()  # 503 to everything
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await router.stub.Chat(pb.ChatRequest(
                routing=routing(None, "broken/broken-model"), messages=_MESSAGES), timeout=10)
    seen = len(broken.chat_requests())
    assert seen == 2
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, hedge(0.2))
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
    assert len(broken.chat_requests()) == seen  # the hedge skipped the open breaker


@pytest.mark.parametrize("mode", MODES)
async def test_a_rate_limited_target_is_not_hedged_to(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, limited, backup = await fakes(), await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("limited", fake=limited, rate_limit_rpm=1),
                                        Upstream("backup", fake=backup)])
    await call(router, mode, None, model="limited/limited-model")  # its one request a minute
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, hedge(0.2))
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
    assert len(limited.chat_requests()) == 1


async def test_a_target_at_its_concurrency_limit_is_not_hedged_to(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, limited, backup = await fakes(), await fakes(), await fakes()
    upstreams = [Upstream("primary", fake=primary), Upstream("limited", fake=limited),
                 Upstream("backup", fake=backup)]
    toml = config(upstreams).replace('name = "limited"', 'name = "limited"\nmax_concurrent = 1')
    router = await start_router(toml, env={KEY_ENV: KEY})
    limited.down(NO_TOKEN)
    # One stream holds the limited provider's only slot.
    held = asyncio.ensure_future(stream(router, pb.StreamChatRequest(
        routing=routing(None, "limited/limited-model"), messages=_MESSAGES), timeout=30))
    for _ in range(500):
        if limited.chat_requests():
            break
        await asyncio.sleep(0.02)
    assert len(limited.chat_requests()) == 1
    primary.down(SILENT)
    provider, attempts, _, _ = await call(router, "chat", hedge(0.2))
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
    assert len(limited.chat_requests()) == 1  # the hedge skipped the full provider
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_hedge_falls_back_to_the_next_target(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, failing, backup = await fakes(), await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("failing", fake=failing),
                                        Upstream("backup", fake=backup)],
                         retry_max_attempts=1)
    primary.down(SLOW[mode])
    failing.down(Fault(status=500))
    provider, attempts, _, _ = await call(router, mode, hedge(0.2))
    assert provider == "backup"
    # One hedge allowed: the failing hedge's slot went to the next target as failover does.
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("failing", PROVIDER_ERROR),
                                          ("primary", HEDGE_LOST)]
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)


@pytest.mark.parametrize("mode", MODES)
async def test_two_hedges_each_after_the_delay(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, second, third = await fakes(), await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("second", fake=second),
                                        Upstream("third", fake=third)])
    primary.down(SLOW[mode])
    second.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, hedge(0.2, max_hedges=2))
    assert provider == "third"
    assert sorted(outcomes(attempts)) == [("primary", HEDGE_LOST), ("second", HEDGE_LOST),
                                          ("third", SUCCESS)]
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)
    await asyncio.wait_for(second.disconnected.wait(), 5.0)
    assert metric(router, "provider_router_hedges_total", provider="second") == 1
    assert metric(router, "provider_router_hedges_total", provider="third") == 1


@pytest.mark.parametrize("mode", MODES)
async def test_one_hedge_by_default_never_starts_a_third_target(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, second, third = await fakes(), await fakes(), await fakes()
    # No deadline reserve: each attempt may use all that is left, so no timeout hands the
    # call to the third target by ordinary failover before the deadline.
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("second", fake=second),
                                        Upstream("third", fake=third)], attempt_reserve=0)
    primary.down(SLOW[mode])
    second.down(SLOW[mode])
    request_options = hedge(0.1)
    if mode == "chat":
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await router.stub.Chat(pb.ChatRequest(routing=routing(request_options),
                                                  messages=_MESSAGES), timeout=1.5)
        error = caught.value
    else:
        streamed = await stream(router, pb.StreamChatRequest(
            routing=routing(request_options), messages=_MESSAGES), timeout=1.5)
        assert streamed.error is not None
        error = streamed.error
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert third.chat_requests() == []
    # The one deadline ended the race: both upstream requests were dropped.
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)
    await asyncio.wait_for(second.disconnected.wait(), 5.0)
    assert len(primary.chat_requests()) == 1 and len(second.chat_requests()) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_the_percentile_delay_comes_from_observed_latency(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [
        Upstream("primary", fake=primary, timeouts={"total": 1.0, "first_token": 1.0}),
        Upstream("backup", fake=backup)])
    percentile = pb.HedgeOptions(after_percentile=95)
    # Unmeasured, without a fallback delay: no hedge (failover after the 1 s timeout).
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, percentile)
    assert outcomes(attempts) == [("primary", TIMEOUT), ("backup", SUCCESS)]
    # Twenty fast answers (min_samples) give the primary a p95 of milliseconds ...
    primary.recover()
    for _ in range(20):
        assert (await call(router, mode, None))[0] == "primary"
    # ... so a slow one is hedged long before its 1 s timeout, though no fixed delay is set.
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, percentile)
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]


async def test_invalid_hedge_options_are_rejected_with_field_violations(
        start_router: StartRouter, fakes: Fakes) -> None:
    router = await serve(start_router, [Upstream("primary", fake=await fakes())])
    options = pb.HedgeOptions(max_hedges=3, after_percentile=100)
    options.after.CopyFrom(Duration(seconds=-1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(pb.ChatRequest(routing=routing(options), messages=_MESSAGES),
                               timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
    fields = {v.field: v.description for v in bad.field_violations}
    assert set(fields) == {"routing.hedge.max_hedges", "routing.hedge.after_percentile",
                           "routing.hedge.after"}
    assert "got 3" in fields["routing.hedge.max_hedges"]


async def test_a_stop_chain_error_of_a_racer_ends_the_race(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    primary.down(SILENT)
    backup.down(Fault(status=400, code="invalid_request_error", message="bad request"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(pb.ChatRequest(routing=routing(hedge(0.2)),
                                              messages=_MESSAGES), timeout=20)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The caller's error ended the request: the racing primary was dropped too.
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)
    assert outcomes(attempts_detail(caught.value).attempts) == [
        ("backup", pb.ATTEMPT_OUTCOME_REJECTED)]


async def test_a_caller_leaving_mid_race_drops_every_racer(
        start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    primary.down(NO_TOKEN)
    backup.down(NO_TOKEN)
    call_ = router.stub.StreamChat(pb.StreamChatRequest(routing=routing(hedge(0.05)),
                                                        messages=_MESSAGES), timeout=30)
    for _ in range(500):  # both racing: each fake has the request
        if primary.chat_requests() and backup.chat_requests():
            break
        await asyncio.sleep(0.02)
    assert len(primary.chat_requests()) == 1 and len(backup.chat_requests()) == 1
    call_.cancel()
    await asyncio.wait_for(primary.disconnected.wait(), 5.0)
    await asyncio.wait_for(backup.disconnected.wait(), 5.0)

    async def idle() -> bool:
        listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
        return all(p.status.in_flight == 0 for p in listing.providers)

    assert await eventually(idle, within=5.0)


@pytest.mark.parametrize("mode", MODES)
async def test_a_zero_delay_races_both_at_once(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    primary, backup = await fakes(), await fakes()
    router = await serve(start_router, [Upstream("primary", fake=primary),
                                        Upstream("backup", fake=backup)])
    primary.down(SLOW[mode])
    provider, attempts, _, _ = await call(router, mode, hedge(0.0))
    assert provider == "backup"
    assert sorted(outcomes(attempts)) == [("backup", SUCCESS), ("primary", HEDGE_LOST)]
