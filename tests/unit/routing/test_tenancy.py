"""TenantRouter: budgets before the call, spend after it, over memory and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from provider_router import domain as d
from provider_router.errors import BudgetExceededError, ModelNotAllowedError
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import MemoryBucketStore
from provider_router.routing.tenancy import TenantRouter
from provider_router.state.redis_spend import RedisSpendStore
from provider_router.state.spend import MemorySpendStore, SpendStore
from provider_router.telemetry.metrics import Metrics
from provider_router.tenants import Tenant
from tests.redis.server import RedisServer

NOW = datetime(2026, 12, 31, 22, 0, tzinfo=UTC).timestamp()  # 2 h before day and month end
USAGE = d.Usage(100, 50, 150)


class AnsweringRouter:
    """Stands in for routing/router.py: every call answers from `mock` at `cost`."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.calls: list[d.ChatRequest] = []

    async def chat(self, request: d.ChatRequest, deadline: Deadline) -> d.ChatResponse:
        self.calls.append(request)
        result = d.ChatResult("m", "ok", d.FinishReason.STOP, USAGE)
        return d.ChatResponse("mock", "m", result, self.cost, 0.01, (), d.Strategy.DEFAULT)

    async def stream(self, request: d.ChatRequest, deadline: Deadline
                     ) -> AsyncIterator[d.RouterStreamEvent]:
        self.calls.append(request)
        yield d.TextDelta("ok")
        yield d.StreamEnded("mock", "m", d.FinishReason.STOP, USAGE, self.cost, (), 0.01, 0.0)


def _router(tenants: list[Tenant], spend: SpendStore, cost: float = 1.0
            ) -> tuple[TenantRouter, AnsweringRouter]:
    inner = AnsweringRouter(cost)
    registry = SimpleNamespace(snapshot=lambda: SimpleNamespace(providers={"mock": None}))
    router = TenantRouter(inner, registry, {t.name: t for t in tenants},  # type: ignore[arg-type]
                          spend, MemoryBucketStore(), Metrics(), wall_clock=lambda: NOW)
    return router, inner


def _request(tenant: str = "", model: str = "") -> d.ChatRequest:
    return d.ChatRequest((d.ChatMessage(d.Role.USER, "hi"),),
                         routing=d.RoutingOptions(model=model), tenant=tenant)


async def _chat(router: TenantRouter, request: d.ChatRequest) -> Any:
    return await router.chat(request, Deadline.after(5))


async def test_budget_refuses_once_spent_reaches_the_limit() -> None:
    router, inner = _router([Tenant("acme", budget_day_usd=2.0)], MemorySpendStore())
    await _chat(router, _request("acme"))          # spent 0 -> 1
    await _chat(router, _request("acme"))          # spent 1 -> 2
    with pytest.raises(BudgetExceededError) as info:
        await _chat(router, _request("acme"))      # spent 2 >= 2
    assert len(inner.calls) == 2                   # refused before the call
    assert info.value.info() == {"tenant": "acme", "period": "day", "limit_usd": "2.000000",
                                 "spent_usd": "2.000000"}
    assert info.value.retry_after_s == 7200.0


async def test_month_budget_retries_at_the_month_end() -> None:
    router, _ = _router([Tenant("acme", budget_month_usd=0.5)], MemorySpendStore())
    await _chat(router, _request("acme"))
    with pytest.raises(BudgetExceededError) as info:
        await _chat(router, _request("acme"))
    assert info.value.period == "month" and info.value.retry_after_s == 7200.0


async def test_stream_spend_is_recorded_at_the_end() -> None:
    spend = MemorySpendStore()
    router, _ = _router([Tenant("acme", budget_day_usd=1.0)], spend, cost=0.75)
    events = [e async for e in router.stream(_request("acme"), Deadline.after(5))]
    assert isinstance(events[-1], d.StreamEnded)
    [usage] = await router.usage(("acme",))
    assert usage.spent_day_usd == 0.75
    assert usage.day_lines == (d_line := usage.month_lines)
    assert (d_line[0].prompt_tokens, d_line[0].completion_tokens) == (100, 50)


async def test_callers_without_tenant_are_recorded_under_none_or_get_default() -> None:
    spend = MemorySpendStore()
    router, _ = _router([Tenant("acme")], spend)
    await _chat(router, _request())
    by_name = {u.tenant: u for u in await router.usage(())}
    assert by_name["(none)"].spent_day_usd == 1.0 and by_name["acme"].spent_day_usd == 0.0
    limited, _ = _router([Tenant("default", models=("gpt-*",))], MemorySpendStore())
    with pytest.raises(ModelNotAllowedError):
        await _chat(limited, _request(model="claude"))


async def test_redis_spend_makes_the_budget_global(redis_server: RedisServer) -> None:
    stores = [RedisSpendStore.from_url(redis_server.url) for _ in range(2)]
    try:
        tenants = [Tenant("acme", budget_day_usd=1.0)]
        replica_one, _ = _router(tenants, stores[0])
        replica_two, inner_two = _router(tenants, stores[1])
        await _chat(replica_one, _request("acme"))
        with pytest.raises(BudgetExceededError):
            await _chat(replica_two, _request("acme"))
        assert inner_two.calls == []
    finally:
        for store in stores:
            await store.aclose()
