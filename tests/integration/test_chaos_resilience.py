"""Chaos: rate limits as cooldowns, per-model breakers, adaptive half-open, slow failures and
the request's own fallbacks, through the real server against real HTTP fakes.

One provider (`multi`) serves several models and a `backup` provider serves one; the
requests name the model at `multi` explicitly and name the backup as a per-request fallback
(`RoutingOptions.fallbacks`), as a caller of a many-model provider would. Each test shows
that a fault of one model stays with that model.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb
from provider_router_client import AsyncRouterClient, text_request
from tests.fakes.base import FakeUpstream, Fault
from tests.fakes.harness import KEY_ENV
from tests.integration.chaos import (
    ENV,
    MODES,
    NOT_SERVING,
    SERVING,
    Answer,
    Streamed,
    eventually,
    gaps,
    outcomes,
    provider_health,
    provider_status,
)
from tests.integration.conftest import Fakes, RunningRouter, StartRouter

SUCCESS = pb.ATTEMPT_OUTCOME_SUCCESS
RATE_LIMITED = pb.ATTEMPT_OUTCOME_RATE_LIMITED
PROVIDER_ERROR = pb.ATTEMPT_OUTCOME_PROVIDER_ERROR
CONNECTION_FAILED = pb.ATTEMPT_OUTCOME_CONNECTION_FAILED
TIMEOUT = pb.ATTEMPT_OUTCOME_TIMEOUT
SKIPPED = pb.ATTEMPT_OUTCOME_SKIPPED
MODELS = ("m-a", "m-b", "m-c")
BACKUP = "backup/b-1"


def _config(multi: str, backup: str, **resilience: object) -> str:
    keys = "\n".join(f"{k} = {v}" for k, v in
                     {"ramp": 0, "health_interval": 0, **resilience}.items())
    models = "\n".join(f'[[providers.models]]\nname = "{m}"' for m in MODELS)
    return f"""
[resilience]
{keys}

[[providers]]
name = "multi"
kind = "openai"
base_url = "{multi}"
api_key_env = "{KEY_ENV}"
{models}

[[providers]]
name = "backup"
kind = "openai"
base_url = "{backup}"
api_key_env = "{KEY_ENV}"
models = ["b-1"]
"""


async def _router(start_router: StartRouter, multi: str, backup: FakeUpstream,
                  **resilience: object) -> RunningRouter:
    return await start_router(_config(multi, backup.base_url, **resilience), env=ENV)


def _routing(model: str, fallbacks: tuple[str, ...] = (BACKUP,)) -> pb.RoutingOptions:
    return pb.RoutingOptions(model=f"multi/{model}", fallbacks=[
        pb.RouteTarget(provider=f.split("/")[0], model=f.split("/")[1]) for f in fallbacks])


_MESSAGES = [pb.ChatMessage(role=pb.ROLE_USER, content="Say hello")]


async def _call(router: RunningRouter, mode: str, model: str, timeout: float = 10.0) -> Answer:
    started = time.monotonic()
    if mode == "chat":
        response = await router.stub.Chat(
            pb.ChatRequest(routing=_routing(model), messages=_MESSAGES), timeout=timeout)
        return Answer(response.provider, response.model, response.message.content,
                      response.finish_reason, response.usage, response.cost_usd,
                      list(response.attempts), time.monotonic() - started)
    events = [e async for e in router.stub.StreamChat(
        pb.StreamChatRequest(routing=_routing(model), messages=_MESSAGES), timeout=timeout)]
    streamed = Streamed(events, None, time.monotonic() - started)
    end = streamed.end
    return Answer(end.provider, end.model, streamed.text_after_restart(), end.finish_reason,
                  end.usage, end.cost_usd, list(end.attempts), streamed.elapsed, streamed)


async def _reasons(router: RunningRouter, model: str) -> dict[str, int]:
    """Route's explanation for `multi/<model>` with the backup fallback: reason per target
    ("provider/model" → exclusion reason, 0 when eligible)."""
    decision = await router.stub.Route(pb.RouteRequest(routing=_routing(model)), timeout=5)
    return {f"{c.provider}/{c.model}": int(c.exclusion_reason) for c in decision.candidates}


# --- 429 and quota: a cooldown of that target, never a breaker -----------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_persistent_429_on_one_model_leaves_the_providers_other_models_alone(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, cooldown=0.5)
    multi.down_model("m-a", Fault(status=429))
    for _ in range(6):  # twice what would have opened a provider breaker before
        got = await _call(router, mode, "m-a")
        assert got.provider == "backup"
        assert all(o in (RATE_LIMITED, SKIPPED, SUCCESS) for _, o in outcomes(got.attempts))
    # The limited model cools down; its neighbours, and the provider, are untouched.
    assert await _reasons(router, "m-a") == {"multi/m-a": pb.EXCLUSION_REASON_COOLDOWN,
                                             BACKUP: 0}
    for model in ("m-b", "m-c"):
        got = await _call(router, mode, model)
        assert outcomes(got.attempts) == [("multi", SUCCESS)]
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(names=["multi"]))
    assert listing.providers[0].status.breaker_state == pb.BREAKER_STATE_CLOSED
    # Routed around, not hammered: one request per cooldown at most.
    assert 1 <= len(multi.requests_for("m-a")) <= 3


async def test_a_spent_quota_cools_the_target_for_long_and_is_resource_exhausted_alone(
        start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, cooldown_max=30)
    multi.down_model("m-a", Fault(status=429, code="insufficient_quota",
                                  message="You exceeded your current quota"))
    got = await _call(router, "chat", "m-a")
    assert outcomes(got.attempts) == [("multi", RATE_LIMITED), ("backup", SUCCESS)]
    assert got.attempts[0].reason == "PROVIDER_QUOTA_EXHAUSTED"
    # Without a fallback the caller learns the wait: about the quota cooldown.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(pb.ChatRequest(routing=_routing("m-a", ()), messages=_MESSAGES),
                               timeout=5)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.RetryInfo()
    assert any(d.Unpack(info) for d in status.details if d.Is(info.DESCRIPTOR))
    assert 25.0 < info.retry_delay.ToTimedelta().total_seconds() <= 30.0
    assert len(multi.requests_for("m-a")) == 1
    assert outcomes((await _call(router, "chat", "m-b")).attempts) == [("multi", SUCCESS)]


# --- per-model breakers, and a provider-level one for connection-level failures ------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_model_opens_its_own_breaker_only(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, breaker_fail_max=2,
                           retry_max_attempts=1)
    multi.down_model("m-a")  # 503 for m-a only
    for _ in range(2):
        got = await _call(router, mode, "m-a")
        assert outcomes(got.attempts) == [("multi", PROVIDER_ERROR), ("backup", SUCCESS)]
    assert await _reasons(router, "m-a") == {"multi/m-a": pb.EXCLUSION_REASON_BREAKER_OPEN,
                                             BACKUP: 0}
    got = await _call(router, mode, "m-a")
    assert outcomes(got.attempts) == [("backup", SUCCESS)]  # skipped by the planner
    assert len(multi.requests_for("m-a")) == 2
    for model in ("m-b", "m-c"):
        assert await _reasons(router, model) == {f"multi/{model}": 0, BACKUP: 0}
        got = await _call(router, mode, model)
        assert outcomes(got.attempts) == [("multi", SUCCESS)]
    # The provider shows its worst breaker, but it is degraded, not down: it still serves.
    status = await provider_status(router, "multi")
    assert status.breaker_state == pb.BREAKER_STATE_OPEN
    assert status.health == pb.HEALTH_STATE_DEGRADED
    assert await provider_health(router, "multi") == SERVING


async def test_an_unreachable_provider_opens_its_provider_level_breaker_for_every_model(
        start_router: StartRouter, fakes: Fakes) -> None:
    gone, backup = await fakes(), await fakes()
    dead_url = gone.base_url
    await gone.close()  # nothing listens there any more: connection refused
    router = await _router(start_router, dead_url, backup, breaker_fail_max=2,
                           retry_max_attempts=1)
    for model in ("m-a", "m-b"):  # two models, one connection-level failure each
        got = await _call(router, "chat", model)
        assert outcomes(got.attempts) == [("multi", CONNECTION_FAILED), ("backup", SUCCESS)]
    # The provider-level breaker opened: a model never tried is skipped all the same.
    assert await _reasons(router, "m-c") == {"multi/m-c": pb.EXCLUSION_REASON_BREAKER_OPEN,
                                             BACKUP: 0}
    got = await _call(router, "chat", "m-c")
    assert outcomes(got.attempts) == [("backup", SUCCESS)]
    assert (await provider_status(router, "multi")).health == pb.HEALTH_STATE_UNHEALTHY
    assert await eventually(lambda: _serving_is(router, "multi", NOT_SERVING))


async def _serving_is(router: RunningRouter, name: str, expected: int) -> bool:
    return await provider_health(router, name) == expected


# --- adaptive half-open ------------------------------------------------------------------------


async def test_half_open_trials_start_short_and_back_off_while_the_model_stays_down(
        start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, breaker_fail_max=1,
                           retry_max_attempts=1, breaker_reset_initial=0.3,
                           breaker_reset_timeout=1.0)
    multi.down_model("m-a")
    until = time.monotonic() + 3.2
    while time.monotonic() < until:
        got = await _call(router, "chat", "m-a")
        assert got.provider == "backup"
        await asyncio.sleep(0.02)
    seen = [r.at for r in multi.requests_for("m-a")]
    waits = gaps(multi.requests_for("m-a"))
    # The opening failure, then one trial after 0.3 s, 0.6 s, then 1 s (the cap), 1 s; each
    # trial comes with the first call after its wait, so a wait may run a little longer.
    assert 4 <= len(seen) <= 5, waits
    for wait, expected in zip(waits, (0.3, 0.6, 1.0, 1.0), strict=False):
        assert expected - 0.02 <= wait <= expected + 0.4, waits
    # Recovery: the next due trial closes the breaker and the model serves again.
    multi.recover_model("m-a")
    await asyncio.sleep(1.05)
    got = await _call(router, "chat", "m-a")
    assert outcomes(got.attempts) == [("multi", SUCCESS)]


# --- classified by time spent --------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_close_after_a_long_silence_is_not_retried_on_the_same_target(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, slow_failure=0.3)
    multi.down_model("m-a", Fault(close_after=0.6))
    got = await _call(router, mode, "m-a")
    assert len(multi.requests_for("m-a")) == 1  # silence is not retried on the same route
    assert outcomes(got.attempts) == [("multi", TIMEOUT), ("backup", SUCCESS)]
    assert "counted as a first-token timeout" in got.attempts[0].error
    assert got.elapsed < 1.5


@pytest.mark.parametrize("mode", MODES)
async def test_a_quick_close_is_still_retried_on_the_same_target(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, slow_failure=0.3)
    multi.fail(Fault(close_after=0.0, model="m-a"))
    got = await _call(router, mode, "m-a")
    assert outcomes(got.attempts) == [("multi", CONNECTION_FAILED), ("multi", SUCCESS)]
    assert not backup.chat_requests()


@pytest.mark.parametrize("mode", MODES)
async def test_a_slow_error_status_is_not_retried_on_the_same_target(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, slow_failure=0.3)
    multi.down_model("m-a", Fault(status=503, headers_delay=0.5))
    got = await _call(router, mode, "m-a")
    assert outcomes(got.attempts) == [("multi", PROVIDER_ERROR), ("backup", SUCCESS)]
    assert got.attempts[0].status_code == 503


# --- the request's own fallbacks ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_request_fallbacks_are_tried_in_order_and_explained(
        mode: str, start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, retry_max_attempts=1)
    decision = await router.stub.Route(pb.RouteRequest(
        routing=_routing("m-a", ("multi/m-b", BACKUP))), timeout=5)
    assert [f"{t.provider}/{t.model}" for t in decision.fallbacks] == ["multi/m-b", BACKUP]
    details = {f"{c.provider}/{c.model}": c.detail for c in decision.candidates}
    assert details[BACKUP] == "fallback named by the request (routing.fallbacks[1])"
    multi.down_model("m-a")
    multi.down_model("m-b")
    started = time.monotonic()
    routing = _routing("m-a", ("multi/m-b", BACKUP))
    if mode == "chat":
        response = await router.stub.Chat(pb.ChatRequest(routing=routing, messages=_MESSAGES),
                                          timeout=10)
        attempts, provider = list(response.attempts), response.provider
    else:
        events = [e async for e in router.stub.StreamChat(
            pb.StreamChatRequest(routing=routing, messages=_MESSAGES), timeout=10)]
        attempts, provider = list(events[-1].end.attempts), events[-1].end.provider
    assert provider == "backup" and time.monotonic() - started < 5
    assert [(a.provider, a.model, a.outcome) for a in attempts] == [
        ("multi", "m-a", PROVIDER_ERROR), ("multi", "m-b", PROVIDER_ERROR),
        ("backup", "b-1", SUCCESS)]


async def test_bad_fallbacks_are_invalid_argument_naming_the_field(
        start_router: StartRouter, fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup)
    for fallbacks, field in (((BACKUP, "ghost/m-1"), "routing.fallbacks[1].provider"),
                             (("backup/",), "routing.fallbacks[0].model")):
        routing = pb.RoutingOptions(model="multi/m-a", fallbacks=[
            pb.RouteTarget(provider=f.split("/")[0], model=f.split("/")[1]) for f in fallbacks])
        for call in (router.stub.Route(pb.RouteRequest(routing=routing), timeout=5),
                     router.stub.Chat(pb.ChatRequest(routing=routing, messages=_MESSAGES),
                                      timeout=5)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
            assert status is not None
            bad = error_details_pb2.BadRequest()
            assert any(d.Unpack(bad) for d in status.details if d.Is(bad.DESCRIPTOR))
            assert [v.field for v in bad.field_violations] == [field]
    assert not multi.chat_requests() and not backup.chat_requests()


async def test_the_python_client_names_fallbacks(start_router: StartRouter,
                                                 fakes: Fakes) -> None:
    multi, backup = await fakes(), await fakes()
    router = await _router(start_router, multi.base_url, backup, retry_max_attempts=1)
    multi.down_model("m-a")
    async with AsyncRouterClient(router.target) as client:
        answer = await client.chat(text_request("Say hello", model="multi/m-a",
                                                fallbacks=[BACKUP]), timeout=10)
    assert (answer.provider, answer.model) == ("backup", "b-1")
    assert outcomes(answer.attempts) == [("multi", PROVIDER_ERROR), ("backup", SUCCESS)]
