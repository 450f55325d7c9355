"""The routing decision: resolve the model, filter candidates, apply rules, order by strategy.

`Planner.decide` calls no provider and has no side effects beyond round-robin turns, so Route
can show exactly what Chat would do. The result lists the chosen target and the failover
chain (every eligible candidate exactly once) and explains every candidate: its rank and
score, or why it was excluded.

Order of precedence:
1. `provider/model` naming a registered provider: exactly that target (strategy explicit);
   rules and preferences do not apply.
2. Rules, when `routing.enabled` and the caller asked for no strategy (or for `rules`): the
   first matching rule (highest priority first) whose targets include an eligible candidate
   wins; its eligible targets lead, ordered by the rule's strategy or as listed. A matching
   rule whose targets are all excluded falls through to the next, with a note.
3. The remaining eligible candidates of the requested model, ordered by the caller's strategy,
   else `routing.strategy` (`rules` with no match orders by `weighted`).
4. The request's own `fallbacks`, in its order, when eligible (routing/fallbacks.py).
Within each of the two blocks (rule targets, then the rest), `prefer_providers` move to the
front in the caller's order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

from provider_router.domain import (
    CandidateReport,
    ChatRequest,
    RouteDecision,
    RouteTarget,
    Strategy,
)
from provider_router.errors import NoCandidateError
from provider_router.routing.candidates import (
    Candidate,
    CandidateFilter,
    CandidateGate,
    Exclusion,
    base_order_key,
)
from provider_router.routing.fallbacks import (
    check_fallbacks,
    fallback_candidates,
    fallback_detail,
)
from provider_router.routing.pricing import expected_completion_tokens
from provider_router.routing.registry import Registry, RegistrySnapshot
from provider_router.routing.resolve import Resolution, ResolutionCache, Source, lookup
from provider_router.routing.rules import Rule, RuleFacts
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.strategies import STRATEGIES
from provider_router.routing.strategies.base import Ranked, StrategyContext, listed
from provider_router.routing.strategies.round_robin import RoundRobinCounters

__all__ = ["CandidateGate", "Planner"]

_SHOWN_EXCLUSIONS = 10


class Planner:
    """Decides where a request goes, and why; thread-safe and free of I/O."""

    def __init__(self, registry: Registry, settings: RoutingSettings,
                 rng: random.Random | None = None, gate: CandidateGate | None = None) -> None:
        self._registry = registry
        self._settings = settings
        self._rng = rng if rng is not None else random.Random()
        self._gate = gate
        self._counters = RoundRobinCounters()
        self._resolutions = ResolutionCache(settings)

    def decide(self, request: ChatRequest, now: datetime | None = None, *,
               explain: bool = True) -> RouteDecision:
        """The decision for `request`; `now` sets the time rules see (dry runs).

        With `explain=False` the decision carries no candidate reports (targets, strategy,
        rule and notes only): Chat and StreamChat need no explanation, and building one
        report per candidate is most of a decision's cost when a model has many providers.

        Raises UnknownModelError when the model resolves to nothing and there is no default,
        and NoCandidateError (an UnavailableError), naming every exclusion, when no
        candidate is eligible.
        """
        snapshot = self._registry.snapshot()
        if request.routing.fallbacks:
            check_fallbacks(snapshot, request.routing.fallbacks)
        resolution = self._resolutions.resolve(snapshot, request.routing.model)
        completion = expected_completion_tokens(request.params,
                                                self._settings.default_completion_tokens)
        # The prompt is estimated only if a test or strategy needs it (CandidateFilter).
        check = CandidateFilter(request, self._registry.stats, self._gate,
                                self._registry.clock(), None, completion)
        return _Decision(self, snapshot, resolution, request, check, now, explain).run()

    @property
    def settings(self) -> RoutingSettings:
        """The routing settings this planner decides by."""
        return self._settings

    def context(self, request: ChatRequest, check: CandidateFilter, group: str,
                notes: list[str]) -> StrategyContext:
        """What strategies see for `request`, with the filter's clock reading and estimates."""
        return StrategyContext(request, self._registry.stats, self._rng, check.now, group,
                               check.prompt_tokens(), check.completion_tokens, self._settings,
                               self._counters, notes)


class _Decision:
    """The working state of one decision (one snapshot, one clock reading)."""

    __slots__ = ("_ctx", "check", "excluded", "explain", "filter", "notes", "now", "planner",
                 "request", "resolution", "settings", "shared", "snapshot", "verdicts")

    def __init__(self, planner: Planner, snapshot: RegistrySnapshot, resolution: Resolution,
                 request: ChatRequest, check: CandidateFilter, now: datetime | None,
                 explain: bool) -> None:
        self.planner = planner
        self.snapshot = snapshot
        self.resolution = resolution
        self.settings = planner.settings
        self.request = request
        self.filter = check
        self.check = check.exclusion
        self.notes = list(resolution.notes)
        self.now = now
        self.explain = explain
        # Built on first use: the common decision (one eligible candidate) runs no strategy.
        self._ctx: StrategyContext | None = None
        # Verdicts by (provider, model): every exclusion, and once rule targets are checked
        # (`shared`), every verdict, so a candidate in two pools is judged once.
        self.verdicts: dict[tuple[str, str], Exclusion | None] = {}
        self.shared = False
        self.excluded: list[CandidateReport] = []

    @property
    def ctx(self) -> StrategyContext:
        """What strategies see; shares this decision's notes."""
        if self._ctx is None:
            self._ctx = self.planner.context(self.request, self.filter, self.resolution.group,
                                             self.notes)
        return self._ctx

    def run(self) -> RouteDecision:
        if self.resolution.source is Source.EXPLICIT:
            ranked = listed(self.eligible(self.resolution.candidates))
            return self.finish(ranked, [], Strategy.EXPLICIT, "")
        matched = self.match_rules() if self.rules_apply() else None
        strategy = self.base_strategy()
        first = matched[1] if matched is not None else []
        rest = self.eligible(self.resolution.candidates)
        if first:
            taken = {(r[0].spec.name, r[0].target.model) for r in first}
            rest = [c for c in rest if (c.spec.name, c.target.model) not in taken]
        if len(rest) == 1 and not self.explain:
            ranked = [(rest[0], 0.0, "")]  # every strategy puts a lone candidate first
        else:
            ranked = STRATEGIES[strategy](self.ctx, rest) if rest else []
        if matched is None:
            return self.finish([], ranked, strategy, "")
        rule = matched[0]
        return self.finish(first, ranked, rule.strategy or Strategy.RULES, rule.name)

    # --- strategy and rules -----------------------------------------------------------------

    def base_strategy(self) -> Strategy:
        requested = self.request.routing.strategy
        if requested is not None and requested is not Strategy.RULES:
            return requested
        configured = self.settings.strategy
        return Strategy.WEIGHTED if configured is Strategy.RULES else configured

    def rules_apply(self) -> bool:
        requested = self.request.routing.strategy
        if requested not in (None, Strategy.RULES):
            return False
        if not self.settings.rules_enabled:
            if requested is Strategy.RULES or self.settings.strategy is Strategy.RULES:
                self.notes.append("rules are disabled (routing.enabled = false)")
            return False
        return bool(self.settings.rules)

    def facts(self) -> RuleFacts:
        options = self.request.routing
        return RuleFacts(attributes=options.attributes, labels=frozenset(options.labels),
                         model=options.model, now=self.now or datetime.now(UTC),
                         zone=self.settings.zone)

    def match_rules(self) -> tuple[Rule, list[Ranked]] | None:
        facts = self.facts()
        self.shared = True
        for rule in self.settings.rules:
            if not rule.matches(facts):
                continue
            pool = self.rule_pool(rule)
            eligible = self.eligible(pool)
            if eligible:
                return rule, self.order_rule_targets(rule, eligible)
            self.notes.append(f"rule {rule.name!r} matched but cannot serve: "
                              f"{self.why_not(pool)}")
        return None

    def order_rule_targets(self, rule: Rule, eligible: list[Candidate]) -> list[Ranked]:
        if rule.strategy is None:
            return listed(eligible)
        # Strategies expect base order (their tie-break), which a rule's list need not be in.
        eligible.sort(key=base_order_key)
        return STRATEGIES[rule.strategy](_regroup(self.ctx, rule), eligible)

    def rule_pool(self, rule: Rule) -> tuple[Candidate, ...]:
        if rule.provider and not rule.model:
            own = tuple(c for c in self.resolution.candidates if c.spec.name == rule.provider)
            return own + self.named_pool(rule.fallbacks)
        if not rule.target_names():
            return self.resolution.candidates  # a strategy-only rule orders the request's own
        return self.named_pool(rule.target_names())

    def named_pool(self, names: Sequence[str]) -> tuple[Candidate, ...]:
        pool: dict[RouteTarget, Candidate] = {}
        for name in names:
            found = lookup(self.snapshot, self.settings, name)
            for c in found.candidates if found is not None else ():
                pool.setdefault(c.target, c)
        return tuple(pool.values())

    # --- eligibility ------------------------------------------------------------------------

    def eligible(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        check, verdicts, shared = self.check, self.verdicts, self.shared
        found: list[Candidate] = []
        for c in candidates:
            if shared:
                key = (c.spec.name, c.target.model)
                if key in verdicts:
                    if verdicts[key] is None:
                        found.append(c)
                    continue
            verdict = check(c)
            if verdict is None:
                found.append(c)
                if shared:
                    verdicts[key] = None
            else:
                self.exclude(c, verdict)
        return found

    def exclude(self, c: Candidate, verdict: Exclusion) -> None:
        self.verdicts[(c.spec.name, c.target.model)] = verdict
        if self.explain:
            self.excluded.append(CandidateReport(c.spec.name, c.target.model, False, 0, 0.0,
                                                 verdict[0], verdict[1]))

    def why_not(self, candidates: Sequence[Candidate]) -> str:
        if not candidates:
            return "no such provider or model is registered"
        reasons = []
        for c in candidates[:_SHOWN_EXCLUSIONS]:
            verdict = self.verdicts.get((c.spec.name, c.target.model))
            reasons.append(f"{c.spec.name}/{c.target.model}: "
                           f"{verdict[0].value if verdict else 'eligible'}")
        more = len(candidates) - _SHOWN_EXCLUSIONS
        return "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")

    # --- the result -------------------------------------------------------------------------

    def finish(self, first: list[Ranked], rest: list[Ranked], strategy: Strategy,
               rule: str) -> RouteDecision:
        prefer = self.request.routing.prefer_providers
        if prefer:
            ordered = _prefer(first, prefer) + _prefer(rest, prefer)
        else:
            ordered = first + rest if first else rest
        if self.request.routing.fallbacks:
            ordered = self.with_fallbacks(ordered)
        if not ordered:
            raise NoCandidateError(f"no provider can serve {self.resolution.name!r}: "
                                   f"{self.why_not(self.resolution.candidates)}"
                                   + "".join(f" ({n})" for n in self.notes),
                                   tuple((provider, model, verdict[0]) for (provider, model),
                                         verdict in self.verdicts.items() if verdict))
        reports: tuple[CandidateReport, ...] = ()
        if self.explain:
            reports = (*[CandidateReport(c.spec.name, c.target.model, True, rank, score, None,
                                         detail)
                         for rank, (c, score, detail) in enumerate(ordered, start=1)],
                       *self.excluded)
        return RouteDecision(tuple([r[0].target for r in ordered]), strategy, rule, reports,
                             tuple(self.notes))


    def with_fallbacks(self, ordered: list[Ranked]) -> list[Ranked]:
        """The routed candidates, then the request's eligible fallbacks in its order."""
        found = fallback_candidates(self.snapshot, self.request.routing.fallbacks,
                                    {r[0].target for r in ordered})
        extended = list(ordered)
        for index, c in found:
            verdict = self.check(c)
            if verdict is None:
                extended.append((c, 0.0, fallback_detail(index)))
            else:
                self.exclude(c, verdict)
        return extended


def _regroup(ctx: StrategyContext, rule: Rule) -> StrategyContext:
    # A rule's round-robin turns are its own, not the requested model's.
    return StrategyContext(ctx.request, ctx.stats, ctx.rng, ctx.now, f"rule:{rule.name}",
                           ctx.prompt_tokens, ctx.completion_tokens, ctx.settings,
                           ctx.counters, ctx.notes)


def _prefer(ranked: list[Ranked], prefer: Sequence[str]) -> list[Ranked]:
    position = {name: i for i, name in enumerate(prefer)}
    front = sorted((r for r in ranked if r[0].spec.name in position),
                   key=lambda r: position[r[0].spec.name])
    return front + [r for r in ranked if r[0].spec.name not in position]
