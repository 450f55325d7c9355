"""Dispatcher bookkeeping per attempt: in-flight counts and breaker verdicts, whatever the
attempt's end (an answer, a cancelled caller, a stream closed after its finish event), and
admission only where a provider has limits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from dataclasses import replace

import pytest

from provider_router import domain as d
from provider_router.connectors.settings import ConnectorSettings
from provider_router.errors import ProviderServerError
from provider_router.resilience.breaker import BreakerConfig, ProviderBreakers
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import RateLimiter
from provider_router.resilience.settings import ResilienceSettings
from provider_router.routing.dispatch import Chain, Dispatcher, Resilience
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.registry import Registry
from provider_router.telemetry.metrics import Metrics
from provider_router.tokens import estimate_prompt_tokens

from .factories import make_registry, provider, request

TARGET = d.RouteTarget("p", "m")
FINISH = d.StreamFinish(d.FinishReason.STOP, d.Usage(1, 1, 2))


class SlowConnector:
    """Answers a chat once `release` is set; streams one delta, then the finish event."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def chat(self, request: d.ProviderRequest, deadline: Deadline) -> d.ChatResult:
        await self.release.wait()
        return d.ChatResult("m", "hi", d.FinishReason.STOP, d.Usage(1, 1, 2))

    async def stream(self, request: d.ProviderRequest, deadline: Deadline
                     ) -> AsyncGenerator[d.StreamEvent, None]:
        yield d.TextDelta("hi")
        yield FINISH

    async def probe(self) -> d.ProbeResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


async def setup(clock: list[float] | None = None
                ) -> tuple[Dispatcher, Registry, ProviderBreakers, SlowConnector]:
    registry = await make_registry(provider("p"))
    connector = SlowConnector()
    pool = ConnectorPool(ConnectorSettings(), lambda spec, settings: connector)
    now = clock if clock is not None else [0.0]
    breakers = ProviderBreakers(BreakerConfig(fail_max=1, reset_timeout_s=30.0),
                                lambda: now[0])
    resilience = Resilience(breakers, RateLimiter(), ResilienceSettings(), random.Random(0))
    return Dispatcher(registry, pool, resilience, Metrics()), registry, breakers, connector


def spec_of(registry: Registry) -> d.ProviderSpec:
    return registry.snapshot().providers["p"]


async def test_a_cancelled_chat_attempt_only_drops_in_flight() -> None:
    dispatcher, registry, breakers, _ = await setup()
    spec, chain = spec_of(registry), Chain()
    call = asyncio.create_task(dispatcher.chat(spec, TARGET, request(), Deadline.after(10),
                                               0, chain))
    await asyncio.sleep(0)
    assert registry.stats.in_flight("p") == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    view = registry.stats.view("p", now=0.0)
    assert (view.in_flight, view.request_count, view.failure_count) == (0, 0, 0)
    assert chain.attempts == []
    assert breakers.state("p", "m") is d.BreakerState.CLOSED  # fail_max = 1: not a failure


async def test_a_stream_closed_after_its_finish_drops_in_flight_once() -> None:
    dispatcher, registry, _, _ = await setup()
    spec = spec_of(registry)
    other = asyncio.create_task(dispatcher.chat(spec, TARGET, request(), Deadline.after(10),
                                                0, Chain()))
    await asyncio.sleep(0)
    chain = Chain()
    events = dispatcher.stream(spec, TARGET, request(), Deadline.after(10), 0, chain)
    assert [await anext(events), await anext(events)] == [d.TextDelta("hi"), FINISH]
    # The caller leaves as soon as it has the finish event (a disconnect at the last write).
    await events.aclose()
    assert [a.outcome for a in chain.attempts] == [d.AttemptOutcome.SUCCESS]
    assert registry.stats.in_flight("p") == 1  # the other call is still in flight
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other


async def test_a_trial_stream_closed_after_its_finish_closes_the_breaker() -> None:
    clock = [0.0]
    dispatcher, registry, breakers, _ = await setup(clock)
    with pytest.raises(ProviderServerError), breakers.guard("p", "m"):
        raise ProviderServerError("p", "HTTP 503", status_code=503)
    assert breakers.state("p", "m") is d.BreakerState.OPEN
    clock[0] = 30.0
    events = dispatcher.stream(spec_of(registry), TARGET, request(), Deadline.after(10), 0,
                               Chain())
    assert [await anext(events), await anext(events)] == [d.TextDelta("hi"), FINISH]
    await events.aclose()
    assert breakers.state("p", "m") is d.BreakerState.CLOSED


def test_chain_tokens_are_estimated_on_first_use_from_the_callers_request() -> None:
    asked = request(text="x" * 400)
    chain = Chain(asked, 256)
    assert chain.tokens == estimate_prompt_tokens(asked.messages) + 256 == 104 + 256
    assert Chain().tokens == 0


async def test_admission_applies_to_providers_with_limits_only() -> None:
    dispatcher, registry, _, connector = await setup()
    connector.release.set()
    spec, chain = spec_of(registry), Chain(request(), 10)
    for _ in range(3):  # no limits: every attempt goes through
        assert await dispatcher.chat(spec, TARGET, request(), Deadline.after(10), 0, chain)
    rpm = replace(spec, rate_limit_rpm=1)
    assert await dispatcher.chat(rpm, TARGET, request(), Deadline.after(10), 0, chain)
    assert await dispatcher.chat(rpm, TARGET, request(), Deadline.after(10), 0, chain) is None
    assert len(chain.waits) == 1 and chain.waits[0] > 0
    registry.stats.start("p")  # one call in flight elsewhere
    single = replace(spec, max_concurrent=1)
    assert await dispatcher.chat(single, TARGET, request(), Deadline.after(10), 0, chain) is None
    assert [(a.outcome, a.reason) for a in chain.attempts] == [
        (d.AttemptOutcome.SUCCESS, "")] * 4 + [(d.AttemptOutcome.SKIPPED, "RATE_LIMITED"),
                                               (d.AttemptOutcome.SKIPPED, "CONCURRENCY_LIMIT")]
