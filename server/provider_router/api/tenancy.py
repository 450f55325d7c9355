"""The api side of tenants: the authenticated tenant into the domain request, and the
GetUsage / ListTenants messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from provider_router import domain as d
from provider_router.api.interceptors import AUTHENTICATED_TENANT
from provider_router.tenants import SpendLine, Tenant, TenantUsage
from provider_router.v1 import router_pb2 as pb

TENANT_ATTRIBUTE = "tenant"
"""The routing attribute rules match tenants on; always the authenticated tenant."""


class TenantPort(Protocol):
    """What the servicer needs for the tenant RPCs (routing/tenancy.py implements it)."""

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        """Every configured tenant."""
        ...

    async def usage(self, names: tuple[str, ...]) -> list[TenantUsage]:
        """Current spend of the named tenants (every one when empty)."""
        ...


def with_tenant(request: d.ChatRequest) -> d.ChatRequest:
    """The request as the authenticated caller sent it: `tenant` set from the API key and the
    `tenant` routing attribute replaced by it (dropped for callers without a tenant), so a
    caller can never route or bill as another tenant."""
    tenant = AUTHENTICATED_TENANT.get()
    attributes = request.routing.attributes
    if tenant == attributes.get(TENANT_ATTRIBUTE, "") and (tenant or
                                                          TENANT_ATTRIBUTE not in attributes):
        return replace(request, tenant=tenant) if tenant else request
    changed = {k: v for k, v in attributes.items() if k != TENANT_ATTRIBUTE}
    if tenant:
        changed[TENANT_ATTRIBUTE] = tenant
    return replace(request, tenant=tenant,
                   routing=replace(request.routing, attributes=changed))


def _line(line: SpendLine) -> pb.UsageLine:
    return pb.UsageLine(provider=line.provider, model=line.model, cost_usd=line.cost_usd,
                        prompt_tokens=line.prompt_tokens,
                        completion_tokens=line.completion_tokens, requests=line.requests)


def _remaining(budget: float, spent: float) -> float:
    return max(0.0, budget - spent) if budget > 0 else 0.0


def usage_to_proto(report: Sequence[TenantUsage]) -> pb.GetUsageResponse:
    """Domain usage → GetUsageResponse."""
    return pb.GetUsageResponse(tenants=[
        pb.TenantUsage(
            tenant=u.tenant, day=u.periods.day.partition(":")[2],
            month=u.periods.month.partition(":")[2],
            spent_day_usd=u.spent_day_usd, spent_month_usd=u.spent_month_usd,
            budget_day_usd=u.budget_day_usd, budget_month_usd=u.budget_month_usd,
            remaining_day_usd=_remaining(u.budget_day_usd, u.spent_day_usd),
            remaining_month_usd=_remaining(u.budget_month_usd, u.spent_month_usd),
            day_lines=[_line(line) for line in u.day_lines],
            month_lines=[_line(line) for line in u.month_lines])
        for u in report])


def tenants_to_proto(tenants: Sequence[Tenant]) -> pb.ListTenantsResponse:
    """Configured tenants → ListTenantsResponse (key hashes never leave the process)."""
    return pb.ListTenantsResponse(tenants=[
        pb.TenantInfo(name=t.name, models=t.models, providers=t.providers, rpm=t.rpm,
                      tpm=t.tpm, budget_day_usd=t.budget_day_usd,
                      budget_month_usd=t.budget_month_usd, key_count=len(t.key_hashes))
        for t in tenants])
