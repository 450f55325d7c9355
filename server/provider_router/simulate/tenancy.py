"""Tenants in a simulation: the candidate config's tenant policy applied to each replayed
request, with the server's own rules (routing/tenancy.py: `restrict`, `budget_error`,
`rate_charges`).

A record's tenant (records.py) picks the policy as on the server: a tenant of that name, else
the `default` tenant for a record without one, else none. Allowed models and providers are
checked first; then the budget, against the tenant's simulated spend in the record's UTC day
and month (checked before the call, charged after it with the cost the report computes, so
the request that crosses a budget is served and the ones after it are rejected); then the
tenant's rpm/tpm over the recorded timestamps (a request charges its recorded tokens, else
the router's estimate). Records without a timestamp share one day and one month and are not
rate limited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provider_router import domain as d
from provider_router.errors import TenantRateLimitedError
from provider_router.resilience.ratelimit import MemoryBucketStore
from provider_router.routing.tenancy import budget_error, rate_charges, restrict
from provider_router.tenants import DEFAULT_TENANT, UNTENANTED, SpendPeriods, Tenant, periods_at

_UNDATED = SpendPeriods(day="day:(no timestamp)", month="month:(no timestamp)",
                        day_resets_in_s=0.0, month_resets_in_s=0.0)
"""The one day and month of records without a timestamp."""


@dataclass(slots=True)
class TenantSpend:
    """One tenant's replayed requests and simulated spend, per UTC day and month."""

    requests: int = 0
    rejected: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    days: dict[str, float] = field(default_factory=dict)
    months: dict[str, float] = field(default_factory=dict)


def _periods(at: float | None) -> SpendPeriods:
    return _UNDATED if at is None else periods_at(datetime.fromtimestamp(at, UTC))


class TenantLedger:
    """The tenants of one config, their rate buckets and their spend, across one replay."""

    def __init__(self, tenants: Iterable[Tenant], providers: Iterable[str]) -> None:
        self._tenants = {t.name: t for t in tenants}
        self._providers = tuple(providers)
        self._buckets = MemoryBucketStore()
        self.spend: dict[str, TenantSpend] = {}

    def _policy(self, request: d.ChatRequest) -> Tenant | None:
        return self._tenants.get(request.tenant or DEFAULT_TENANT)

    def _account(self, request: d.ChatRequest) -> TenantSpend:
        tenant = self._policy(request)
        name = tenant.name if tenant is not None else (request.tenant or UNTENANTED)
        return self.spend.setdefault(name, TenantSpend())

    async def admit(self, request: d.ChatRequest, at: float | None, tokens: int
                    ) -> d.ChatRequest:
        """The request as its tenant may send it; the server's RouterError when the tenant's
        policy rejects it (model/provider not allowed, budget spent, tenant rate limited)."""
        tenant = self._policy(request)
        if tenant is None:
            return request
        excluded = frozenset(n for n in self._providers if not tenant.allows_provider(n))
        request = restrict(tenant, request, excluded)
        if tenant.has_budget:
            periods = _periods(at)
            spend = self._account(request)
            error = budget_error(tenant, spend.days.get(periods.day, 0.0),
                                 spend.months.get(periods.month, 0.0), periods)
            if error is not None:
                raise error
        charges = rate_charges(tenant, tokens) if at is not None else []
        wait = await self._buckets.take(charges, at) if charges and at is not None else 0.0
        if wait > 0:
            raise TenantRateLimitedError(tenant.name, wait)
        return request

    def rejected(self, request: d.ChatRequest) -> None:
        """Count a rejected request against its tenant."""
        self._account(request).rejected += 1

    def charge(self, request: d.ChatRequest, at: float | None, cost: float | None) -> None:
        """Charge a served request's cost (None: unpriced, charged as $0 like the server) to
        its tenant's day and month."""
        spend = self._account(request)
        periods = _periods(at)
        spend.requests += 1
        spend.unpriced += cost is None
        spent = cost or 0.0
        spend.cost_usd += spent
        spend.days[periods.day] = spend.days.get(periods.day, 0.0) + spent
        spend.months[periods.month] = spend.months.get(periods.month, 0.0) + spent
