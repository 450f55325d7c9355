"""Hedged requests: when the chain's first target is slow to answer, race the next one.

A hedged request starts its first target as usual. If it has not answered by the hedge delay
(Chat: the whole answer; StreamChat: its first delta, or its finish when the answer is empty),
the next eligible target of the failover chain starts too, and so on up to `max_hedges`
extra targets, each after the delay of the one started before it. The first to answer wins;
the others are cancelled at once, which closes their upstream connections so the providers
stop generating. Only the winner's usage and cost reach the caller; every loser is listed in
the attempts as HEDGE_LOST and its spend is counted in `provider_router_uncharged_*` metrics
(a loser cancelled before its usage was known counts its estimated prompt tokens, flagged
`estimated="true"`: what it generated before the cancel is unknown).

Every attempt of the race goes through the Dispatcher like any other (admission, breaker,
same-provider retries, the one deadline), so a hedge never reaches an open breaker or a
provider without rate-limit or concurrency headroom: such a target is skipped and the next
one tried. A racer that gives up on its target is replaced by the next target at once, as
the failover chain would without hedging; an error that ends the request (a caller error)
ends the race. The delay is fixed, or a percentile of the target's observed latency (Chat)
or time to first token (StreamChat), with the fixed delay standing in while fewer than
`min_samples` observations exist. No hedge starts once the deadline would have passed, and
requests carrying tools are not hedged unless the policy allows it.

For StreamChat the race ends at the first event: from then on the winner is an ordinary
stream (routing/streaming.py), and nothing of a loser ever reaches the caller. The race
itself (racers, timer, cancellation) is routing/hedge_race.py; this module decides the
policy and the delays and keeps the books.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from provider_router import domain as d
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.settings import ErrorPickMode
from provider_router.routing.dispatch import Chain, Dispatcher
from provider_router.routing.hedge_config import HedgeSettings
from provider_router.routing.hedge_race import (
    Events,
    Race,
    Racer,
    Won,
    first_event,
    resumed,
)
from provider_router.routing.outcome import chain_failure, chat_response
from provider_router.routing.pricing import cost_usd
from provider_router.routing.stats import StatsBook
from provider_router.telemetry.metrics import Metrics
from provider_router.tokens import estimate_prompt_tokens

SpecLookup = Callable[[str], d.ProviderSpec | None]
"""The current spec of a provider by name (None once unregistered)."""

WaitForCapacity = Callable[[Chain, Deadline], Awaitable[bool]]
"""Sleeps until a rate-limited candidate has room again; False when that is not worth it."""

_HEDGE_LOST = d.AttemptOutcome.HEDGE_LOST
_UNCHARGED = "hedge_lost"


class Hedger:
    """Runs hedged Chat and StreamChat calls over the failover chain."""

    def __init__(self, dispatcher: Dispatcher, specs: SpecLookup, stats: StatsBook,
                 metrics: Metrics, settings: HedgeSettings) -> None:
        self._dispatcher = dispatcher
        self._specs = specs
        self._stats = stats
        self._metrics = metrics
        self._settings = settings

    def policy(self, request: d.ChatRequest) -> d.HedgePolicy | None:
        """The request's hedging policy (its own, else the configured one); None when the
        request is not hedged."""
        policy = request.routing.hedge or self._settings.policy
        if policy is None or not policy.enabled:
            return None
        if request.tools and not policy.allow_tools:
            return None  # a tool call is not assumed to be idempotent
        return policy

    # --- Chat -------------------------------------------------------------------------------

    async def chat(self, policy: d.HedgePolicy, request: d.ChatRequest,
                   targets: tuple[d.RouteTarget, ...], deadline: Deadline, chain: Chain
                   ) -> Won[d.ChatResult] | None:
        """The first complete answer of the chain, hedged; None when every target failed."""
        count = len(targets)

        def launch(index: int, target: d.RouteTarget, spec: d.ProviderSpec
                   ) -> tuple[Coroutine[Any, Any, d.ChatResult | None], Events | None]:
            return self._dispatcher.chat(spec, target, request, deadline, count - index - 1,
                                         chain), None

        race = Race(self, policy, targets, deadline, chain, launch, stream=False)
        return await race.run(0)

    async def chat_response(self, policy: d.HedgePolicy, request: d.ChatRequest,
                            decision: d.RouteDecision, targets: tuple[d.RouteTarget, ...],
                            deadline: Deadline, chain: Chain, started: float,
                            wait_for_capacity: WaitForCapacity, error_pick: ErrorPickMode
                            ) -> d.ChatResponse:
        """Router.chat for a hedged request: the race, once more after waiting for capacity
        when local rate limits were all that stood in the way, else the chain's failure."""
        for rounds in range(2):
            won = await self.chat(policy, request, targets, deadline, chain)
            if won is not None:
                return chat_response(won.target, won.spec, won.result, chain, decision, started)
            if rounds or not await wait_for_capacity(chain, deadline):
                break
        raise chain_failure(chain, deadline, error_pick)

    # --- StreamChat -------------------------------------------------------------------------

    async def stream(self, policy: d.HedgePolicy, request: d.ChatRequest,
                     targets: tuple[d.RouteTarget, ...], first: int, deadline: Deadline,
                     chain: Chain) -> Won[Events] | None:
        """The stream of the first target (from `first` on) to send an event, that event
        included; None when every target gave up before sending one."""
        count = len(targets)

        def launch(index: int, target: d.RouteTarget, spec: d.ProviderSpec
                   ) -> tuple[Coroutine[Any, Any, d.StreamEvent | None], Events | None]:
            events = self._dispatcher.stream(spec, target, request, deadline,
                                             count - index - 1, chain)
            return first_event(events), events

        race: Race[d.StreamEvent] = Race(self, policy, targets, deadline, chain, launch,
                                           stream=True)
        won = await race.run(first)
        if won is None:
            return None
        assert won.result is not None and race.winner_events is not None
        return Won(won.index, won.target, won.spec, resumed(won.result, race.winner_events))

    # --- what the race asks and reports -----------------------------------------------------

    def usable(self, target: d.RouteTarget, chain: Chain, deadline: Deadline
               ) -> d.ProviderSpec | None:
        """The target's spec if it is worth an attempt (Dispatcher.usable)."""
        return self._dispatcher.usable(self._specs(target.provider), target, chain, deadline)

    def delay_s(self, policy: d.HedgePolicy, provider: str, stream: bool) -> float | None:
        """Seconds to wait for a target before hedging it; None: never hedge it."""
        if policy.percentile is not None:
            observed = self._stats.percentile_ms(provider, policy.percentile, stream,
                                                 self._settings.min_samples)
            if observed is not None:
                return observed / 1000.0
        return policy.after_s

    def hedged(self, provider: str) -> None:
        """Count a hedge started."""
        self._metrics.hedges.labels(provider).inc()

    def lost(self, chain: Chain, racer: Racer[Any], winner: Racer[Any] | None,
             usage: d.Usage | None, stream: bool) -> None:
        """Record a racer that did not win: cancelled (or, in a tie, answered) too late."""
        duration = time.monotonic() - racer.started
        provider, model = racer.target.provider, racer.target.model
        if winner is None:
            # The request ended (an error, the deadline, or the caller left) while it ran.
            attempt = d.Attempt(provider, model, d.AttemptOutcome.CANCELLED, duration,
                                error="cancelled: the request ended", reason="HEDGE_CANCELLED")
        else:
            attempt = d.Attempt(
                provider, model, _HEDGE_LOST, duration, reason="HEDGE_LOST",
                error=f"cancelled: {winner.target.provider}/{winner.target.model} answered first")
        # A racer that answered in the same instant as the winner has its success recorded
        # already: that record becomes the loss.
        if usage is None or not _relabel(chain, racer.target, attempt):
            chain.attempts.append(attempt)
            self._metrics.attempts.labels(provider, model, attempt.outcome).inc()
            if winner is not None:
                self._stats.censored(provider, duration, stream)
        if winner is not None:
            self._uncharged(racer, chain, usage)

    def _uncharged(self, racer: Racer[Any], chain: Chain, usage: d.Usage | None) -> None:
        """A loser's spend: its usage when it answered, else its estimated prompt tokens."""
        estimated = usage is None
        if usage is None:
            prompt = estimate_prompt_tokens(chain.request.messages) if chain.request else 0
            usage = d.Usage(prompt, 0, prompt, estimated=True)
        provider = racer.target.provider
        flag = "true" if estimated or usage.estimated else "false"
        tokens = self._metrics.uncharged_tokens
        if usage.prompt_tokens:
            tokens.labels(provider, _UNCHARGED, "prompt", flag).inc(usage.prompt_tokens)
        if usage.completion_tokens:
            tokens.labels(provider, _UNCHARGED, "completion", flag).inc(usage.completion_tokens)
        cost = cost_usd(racer.spec.model(racer.target.model), usage)
        if cost:
            self._metrics.uncharged_cost.labels(provider, _UNCHARGED).inc(cost)

    def raced(self, winner: Racer[Any] | None) -> None:
        """Count a race in which a hedge fired, by who won it."""
        label = "none" if winner is None else ("hedge" if winner.hedge else "primary")
        self._metrics.hedge_races.labels(label).inc()


def _relabel(chain: Chain, target: d.RouteTarget, lost: d.Attempt) -> bool:
    """Turn the success the Dispatcher recorded for a tied loser into its loss."""
    for position in range(len(chain.attempts) - 1, -1, -1):
        attempt = chain.attempts[position]
        if (attempt.outcome is d.AttemptOutcome.SUCCESS and attempt.provider == target.provider
                and attempt.model == target.model):
            chain.attempts[position] = d.Attempt(
                lost.provider, lost.model, lost.outcome, attempt.duration_s,
                error=lost.error, reason=lost.reason)
            return True
    return False
