"""Tenant policy around the router: allowed models and providers, per-tenant RPM/TPM, a
budget checked before each call, and spend recorded after it.

`TenantRouter` wraps the Router and is only built when tenants are configured (app.py), so
a service without tenants pays nothing for this module on any request. It reads the
request's `tenant`, which the api layer sets from the authenticated API key; a request
without one (flat client keys, admin keys) gets the `default` tenant's policy when such a
tenant is configured, else no policy, and its spend is recorded under `(none)`.

Budgets are checked before the call against what the store holds: a call that starts under
budget runs to completion, so concurrent calls can overshoot a budget by at most what
the calls in flight at the moment it is crossed cost. Spend is recorded from the usage and
cost the router computed (routing/pricing.py); an answer whose price is unknown records its
tokens at $0. Failed attempts carry no usage (providers report none with an error), so
only the answering attempt is charged.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from provider_router import domain as d
from provider_router.errors import (
    BudgetExceededError,
    ModelNotAllowedError,
    NotFoundError,
    ProviderNotAllowedError,
    TenantRateLimitedError,
)
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.ratelimit import BucketStore, Charge
from provider_router.routing.pricing import expected_completion_tokens
from provider_router.routing.registry import Registry
from provider_router.routing.router import Router
from provider_router.state.spend import PeriodKey, SpendEntry, SpendStore
from provider_router.telemetry.metrics import Metrics
from provider_router.tenants import (
    DEFAULT_TENANT,
    UNTENANTED,
    SpendPeriods,
    Tenant,
    TenantUsage,
    periods_at,
)
from provider_router.tokens import estimate_prompt_tokens

_GRACE_S = 86_400.0
"""How long a period's spend is kept after the period ends (usage reports at midnight)."""


def _rpm(tenant: Tenant) -> Charge:
    rpm = float(tenant.rpm)
    return Charge(f"tenant:{tenant.name}/rpm", rpm, rpm / 60.0, 1.0)


def _tpm(tenant: Tenant, tokens: float) -> Charge:
    tpm = float(tenant.tpm)
    return Charge(f"tenant:{tenant.name}/tpm", tpm, tpm / 60.0, min(tokens, tpm))


# --- pure policy (shared with the what-if simulator) -----------------------------------


def rate_charges(tenant: Tenant, tokens: int) -> list[Charge]:
    """What one call of `tokens` (estimated) takes from the tenant's rpm and tpm buckets."""
    charges = []
    if tenant.rpm:
        charges.append(_rpm(tenant))
    if tenant.tpm:
        charges.append(_tpm(tenant, float(tokens)))
    return charges


def restrict(tenant: Tenant, request: d.ChatRequest, excluded: frozenset[str]
             ) -> d.ChatRequest:
    """The request limited to what the tenant may use, given the providers it may not use
    (`excluded`): PermissionDeniedError for a model or provider it may not name; excluded
    providers are added to the request's exclusions."""
    model = request.routing.model
    if model and not tenant.allows_model(model):
        raise ModelNotAllowedError(tenant.name, model)
    named, slash, _ = model.partition("/")
    if slash and named in excluded:
        raise ProviderNotAllowedError(tenant.name, named)
    if not excluded:
        return request
    routing = replace(request.routing,
                      exclude_providers=request.routing.exclude_providers | excluded)
    return replace(request, routing=routing)


def budget_error(tenant: Tenant, spent_day: float, spent_month: float,
                 periods: SpendPeriods) -> BudgetExceededError | None:
    """The rejection when the tenant's spend in its day or month has reached the budget
    (checked before a call; the call's own cost is charged after it)."""
    for period, limit, spent, resets_in in (
            ("day", tenant.budget_day_usd, spent_day, periods.day_resets_in_s),
            ("month", tenant.budget_month_usd, spent_month, periods.month_resets_in_s)):
        if limit > 0 and spent >= limit:
            return BudgetExceededError(tenant.name, period, limit, spent, resets_in)
    return None


class TenantRouter:
    """The Router with tenant policy in front and spend accounting behind (a RouterPort)."""

    def __init__(self, router: Router, registry: Registry, tenants: Mapping[str, Tenant],
                 spend: SpendStore, buckets: BucketStore, metrics: Metrics,
                 default_completion_tokens: int = 256,
                 wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._router = router
        self._registry = registry
        self._tenants = dict(tenants)
        self._spend = spend
        self._buckets = buckets
        self._metrics = metrics
        self._default_completion_tokens = default_completion_tokens
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        # Per tenant: the registry snapshot its provider exclusions were computed for.
        self._exclusions: dict[str, tuple[object, frozenset[str]]] = {}

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        """Every configured tenant, sorted by name."""
        return tuple(sorted(self._tenants.values(), key=lambda t: t.name))

    def policy(self, request: d.ChatRequest) -> Tenant | None:
        """The tenant whose limits apply to the request, if any."""
        return self._tenants.get(request.tenant or DEFAULT_TENANT)

    def periods(self) -> SpendPeriods:
        """The spend periods of this instant."""
        return periods_at(datetime.fromtimestamp(self._wall_clock(), UTC))

    # --- policy -----------------------------------------------------------------------

    def _disallowed_providers(self, tenant: Tenant) -> frozenset[str]:
        snapshot = self._registry.snapshot()
        cached = self._exclusions.get(tenant.name)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        names = frozenset(n for n in snapshot.providers if not tenant.allows_provider(n))
        self._exclusions[tenant.name] = (snapshot, names)
        return names

    def restricted(self, tenant: Tenant, request: d.ChatRequest) -> d.ChatRequest:
        """The request limited to what the tenant may use: PermissionDeniedError for a model
        or provider it may not name; providers it may not use are excluded from routing."""
        excluded = self._disallowed_providers(tenant) if tenant.providers else frozenset()
        return restrict(tenant, request, excluded)

    async def _check_budget(self, tenant: Tenant, periods: SpendPeriods) -> None:
        spent_day, spent_month = await self._spend.totals(tenant.name, periods.keys)
        error = budget_error(tenant, spent_day, spent_month, periods)
        if error is not None:
            self._metrics.budget_rejections.labels(tenant.name, error.period).inc()
            raise error

    def _estimated_tokens(self, request: d.ChatRequest) -> int:
        return estimate_prompt_tokens(request.messages) + expected_completion_tokens(
            request.params, self._default_completion_tokens)

    async def _take_rate(self, tenant: Tenant, tokens: int) -> None:
        charges = rate_charges(tenant, tokens)
        if not charges:
            return
        wait = await self._buckets.take(charges, self._monotonic())
        if wait > 0:
            self._metrics.tenant_rate_limited.labels(tenant.name).inc()
            raise TenantRateLimitedError(tenant.name, wait)

    async def _admit(self, tenant: Tenant | None, request: d.ChatRequest
                     ) -> tuple[d.ChatRequest, int]:
        """The request as the tenant may send it, and the tokens its tpm bucket was charged."""
        if tenant is None:
            return request, 0
        request = self.restricted(tenant, request)
        if tenant.has_budget:
            await self._check_budget(tenant, self.periods())
        tokens = self._estimated_tokens(request) if tenant.tpm else 0
        await self._take_rate(tenant, tokens)
        return request, tokens

    # --- accounting -------------------------------------------------------------------

    async def _account(self, tenant: Tenant | None, request: d.ChatRequest, provider: str,
                       model: str, usage: d.Usage, cost: float | None, reserved: int) -> None:
        name = tenant.name if tenant is not None else (request.tenant or UNTENANTED)
        spent = cost or 0.0
        periods = self.periods()
        keys = (PeriodKey(periods.day, periods.day_resets_in_s + _GRACE_S),
                PeriodKey(periods.month, periods.month_resets_in_s + _GRACE_S))
        await self._spend.record(name, keys, SpendEntry(provider, model, spent,
                                                        usage.prompt_tokens,
                                                        usage.completion_tokens))
        self._metrics.tenant_cost.labels(name, provider, model).inc(spent)
        self._metrics.tenant_tokens.labels(name, provider, model, "prompt").inc(
            usage.prompt_tokens)
        self._metrics.tenant_tokens.labels(name, provider, model, "completion").inc(
            usage.completion_tokens)
        if tenant is not None and tenant.tpm and reserved != usage.total_tokens:
            # Settle the tpm bucket with what the call really used, as for providers.
            await self._buckets.credit(_tpm(tenant, float(reserved - usage.total_tokens)),
                                       self._monotonic())

    # --- the RouterPort -----------------------------------------------------------------

    def route(self, request: d.ChatRequest, at: float | None) -> d.RouteDecision:
        """Decide within what the tenant may use (no budget or rate check: nothing is spent)."""
        tenant = self.policy(request)
        if tenant is not None:
            request = self.restricted(tenant, request)
        return self._router.route(request, at)

    async def chat(self, request: d.ChatRequest, deadline: Deadline) -> d.ChatResponse:
        """Admit, complete, and record the spend."""
        tenant = self.policy(request)
        request, reserved = await self._admit(tenant, request)
        response = await self._router.chat(request, deadline)
        await self._account(tenant, request, response.provider, response.model,
                            response.result.usage, response.cost_usd, reserved)
        return response

    async def stream(self, request: d.ChatRequest, deadline: Deadline
                     ) -> AsyncIterator[d.RouterStreamEvent]:
        """Admit, stream, and record the spend when the stream ends."""
        tenant = self.policy(request)
        request, reserved = await self._admit(tenant, request)
        events = self._router.stream(request, deadline)
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, d.StreamEnded):
                    # Recorded before the end reaches the caller, who may leave on it.
                    await self._account(tenant, request, event.provider, event.model,
                                        event.usage, event.cost_usd, reserved)
                yield event

    async def register(self, spec: d.ProviderSpec, validate_only: bool) -> d.RegisterOutcome:
        """As Router.register."""
        return await self._router.register(spec, validate_only)

    async def unregister(self, name: str) -> d.ProviderSpec:
        """As Router.unregister."""
        return await self._router.unregister(name)

    def update_metrics(self, report: d.MetricsReport) -> d.ProviderStatus:
        """As Router.update_metrics."""
        return self._router.update_metrics(report)

    def providers(self, names: tuple[str, ...]) -> list[d.ProviderView]:
        """As Router.providers."""
        return self._router.providers(names)

    def api_key_set(self, spec: d.ProviderSpec) -> bool:
        """As Router.api_key_set."""
        return self._router.api_key_set(spec)

    # --- usage --------------------------------------------------------------------------

    async def usage(self, names: tuple[str, ...]) -> list[TenantUsage]:
        """Spend of the named tenants (all configured ones and `(none)` when empty) in the
        current day and month, with their budgets."""
        periods = self.periods()
        # Each tenant once, in the order first named.
        wanted = tuple(dict.fromkeys(names)) or (*sorted(self._tenants), UNTENANTED)
        report = []
        for name in wanted:
            tenant = self._tenants.get(name)
            if tenant is None and name != UNTENANTED:
                raise NotFoundError(f"no tenant named {name[:64]!r}")
            tenant = tenant or Tenant(name)
            spent_day, spent_month = await self._spend.totals(name, periods.keys)
            report.append(TenantUsage(
                tenant=name, periods=periods, spent_day_usd=spent_day,
                spent_month_usd=spent_month, budget_day_usd=tenant.budget_day_usd,
                budget_month_usd=tenant.budget_month_usd,
                day_lines=await self._spend.lines(name, periods.day),
                month_lines=await self._spend.lines(name, periods.month)))
        return report
