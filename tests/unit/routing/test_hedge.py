"""The hedged race in-process: ties, losers' bookkeeping, metrics, and the delay it picks.

The end-to-end behaviour (real server, real HTTP fakes) is in tests/integration/
test_hedging.py; here are the cases a network cannot stage on demand, such as two targets
answering in the same event-loop turn.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator

import pytest

from provider_router import domain as d
from provider_router.connectors.settings import ConnectorSettings
from provider_router.resilience.breaker import BreakerConfig, ProviderBreakers
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import RateLimiter
from provider_router.resilience.settings import ResilienceSettings
from provider_router.routing.dispatch import Chain, Dispatcher, Resilience
from provider_router.routing.hedge import Hedger
from provider_router.routing.hedge_config import HedgeSettings
from provider_router.routing.pool import ConnectorPool
from provider_router.routing.registry import Registry
from provider_router.telemetry.metrics import Metrics

from .factories import make_registry, provider, request

A, B = d.RouteTarget("a", "m"), d.RouteTarget("b", "m")
PRICED = d.ModelSpec("m", input_per_mtok=1.0, output_per_mtok=2.0)


class GatedConnector:
    """Every call waits for one shared gate, so all answer in the same loop turn; `both`
    is set once two calls wait."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.both = asyncio.Event()
        self._waiting = 0

    async def _arrive(self) -> None:
        self._waiting += 1
        if self._waiting == 2:
            self.both.set()
        await self.gate.wait()

    async def chat(self, request: d.ProviderRequest, deadline: Deadline) -> d.ChatResult:
        await self._arrive()
        return d.ChatResult("m", "hi", d.FinishReason.STOP, d.Usage(10, 4, 14))

    async def stream(self, request: d.ProviderRequest, deadline: Deadline
                     ) -> AsyncGenerator[d.StreamEvent, None]:
        await self._arrive()
        yield d.TextDelta("hi")
        yield d.StreamFinish(d.FinishReason.STOP, d.Usage(10, 4, 14))

    async def probe(self) -> d.ProbeResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


async def setup(settings: HedgeSettings | None = None
                ) -> tuple[Hedger, Registry, Metrics, GatedConnector]:
    registry = await make_registry(provider("a", PRICED), provider("b", PRICED))
    connector = GatedConnector()
    pool = ConnectorPool(ConnectorSettings(), lambda spec, s: connector)
    breakers = ProviderBreakers(BreakerConfig(), lambda: 0.0)
    resilience = Resilience(breakers, RateLimiter(), ResilienceSettings(), random.Random(0))
    metrics = Metrics()
    dispatcher = Dispatcher(registry, pool, resilience, metrics)
    specs = registry.snapshot().providers.get
    hedger = Hedger(dispatcher, specs, registry.stats, metrics, settings or HedgeSettings())
    return hedger, registry, metrics, connector


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _open_gate_when_both_run(connector: GatedConnector) -> None:
    await connector.both.wait()
    connector.gate.set()


async def test_a_chat_tie_goes_to_the_first_started_and_the_other_success_becomes_a_loss(
        ) -> None:
    hedger, registry, metrics, connector = await setup()
    chain = Chain(request())
    opener = asyncio.create_task(_open_gate_when_both_run(connector))
    won = await hedger.chat(d.HedgePolicy(after_s=0.0), request(), (A, B),
                            Deadline.after(10), chain)
    await opener
    assert won is not None and won.target == A and won.result.usage.total_tokens == 14
    assert [(a.provider, a.outcome) for a in chain.attempts] == [
        ("a", d.AttemptOutcome.SUCCESS), ("b", d.AttemptOutcome.HEDGE_LOST)]
    assert chain.attempts[1].reason == "HEDGE_LOST"
    # It answered, so its real usage is what it cost: not estimated.
    assert _sample(metrics, "provider_router_uncharged_tokens_total", provider="b",
                   outcome="hedge_lost", kind="completion", estimated="false") == 4
    assert _sample(metrics, "provider_router_uncharged_cost_usd_total", provider="b",
                   outcome="hedge_lost") == pytest.approx((10 * 1.0 + 4 * 2.0) / 1e6)
    assert _sample(metrics, "provider_router_hedge_races_total", winner="primary") == 1
    assert (registry.stats.in_flight("a"), registry.stats.in_flight("b")) == (0, 0)


async def test_a_stream_tie_closes_the_losers_stream_after_its_first_delta() -> None:
    hedger, registry, metrics, connector = await setup()
    chain = Chain(request())
    opener = asyncio.create_task(_open_gate_when_both_run(connector))
    won = await hedger.stream(d.HedgePolicy(after_s=0.0), request(), (A, B), 0,
                              Deadline.after(10), chain)
    await opener
    assert won is not None and won.target == A
    events = [event async for event in won.result]
    assert events[0] == d.TextDelta("hi") and isinstance(events[-1], d.StreamFinish)
    assert [(a.provider, a.outcome) for a in chain.attempts] == [
        ("b", d.AttemptOutcome.HEDGE_LOST), ("a", d.AttemptOutcome.SUCCESS)]
    # Only its first delta had come: its usage is unknown, its prompt is estimated.
    assert _sample(metrics, "provider_router_uncharged_tokens_total", provider="b",
                   outcome="hedge_lost", kind="prompt", estimated="true") > 0
    assert (registry.stats.in_flight("a"), registry.stats.in_flight("b")) == (0, 0)


async def test_a_request_cancelled_mid_race_cancels_every_racer() -> None:
    hedger, registry, _, connector = await setup()
    chain = Chain(request())
    race = asyncio.create_task(hedger.chat(d.HedgePolicy(after_s=0.0), request(), (A, B),
                                           Deadline.after(10), chain))
    await connector.both.wait()
    race.cancel()
    with pytest.raises(asyncio.CancelledError):
        await race
    assert sorted((a.provider, a.outcome, a.reason) for a in chain.attempts) == [
        ("a", d.AttemptOutcome.CANCELLED, "HEDGE_CANCELLED"),
        ("b", d.AttemptOutcome.CANCELLED, "HEDGE_CANCELLED")]
    assert (registry.stats.in_flight("a"), registry.stats.in_flight("b")) == (0, 0)


async def test_the_policy_a_request_gets() -> None:
    configured = d.HedgePolicy(after_s=0.5)
    hedger, *_ = await setup(HedgeSettings(configured))
    plain = request()
    assert hedger.policy(plain) == configured
    own = d.HedgePolicy(after_s=0.1, max_hedges=2)
    assert hedger.policy(d.ChatRequest(plain.messages, d.RoutingOptions(hedge=own))) == own
    off = d.ChatRequest(plain.messages, d.RoutingOptions(hedge=d.NO_HEDGING))
    assert hedger.policy(off) is None
    tools = (d.ToolDefinition("send_email"),)
    assert hedger.policy(d.ChatRequest(plain.messages, tools=tools)) is None
    allowed = d.RoutingOptions(hedge=d.HedgePolicy(after_s=0.1, allow_tools=True))
    assert hedger.policy(d.ChatRequest(plain.messages, allowed, tools=tools)) is not None
    unconfigured, *_ = await setup()
    assert unconfigured.policy(plain) is None


async def test_the_delay_is_the_observed_percentile_once_measured() -> None:
    hedger, registry, _, _ = await setup(HedgeSettings(min_samples=5))
    policy = d.HedgePolicy(after_s=2.0, percentile=80)
    assert hedger.delay_s(policy, "a", stream=True) == 2.0  # unmeasured: the fallback
    for ttft in (0.1, 0.2, 0.3, 0.4, 0.5):
        registry.stats.start("a")
        registry.stats.finish("a", 1.0, ok=True, ttft_s=ttft)
    assert hedger.delay_s(policy, "a", stream=True) == pytest.approx(0.4)
    assert hedger.delay_s(policy, "a", stream=False) == pytest.approx(1.0)
    assert hedger.delay_s(d.HedgePolicy(percentile=80), "b", stream=True) is None
