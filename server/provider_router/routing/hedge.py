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
stream (routing/streaming.py), and nothing of a loser ever reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from provider_router import domain as d
from provider_router.resilience.deadline import Deadline
from provider_router.resilience.settings import ErrorPickMode
from provider_router.routing.dispatch import Chain, Dispatcher
from provider_router.routing.hedge_config import HedgeSettings
from provider_router.routing.outcome import chain_failure
from provider_router.routing.pricing import cost_usd
from provider_router.routing.stats import StatsBook
from provider_router.telemetry.metrics import Metrics
from provider_router.tokens import estimate_prompt_tokens

R = TypeVar("R")

SpecLookup = Callable[[str], d.ProviderSpec | None]
"""The current spec of a provider by name (None once unregistered)."""

WaitForCapacity = Callable[[Chain, Deadline], Awaitable[bool]]
"""Sleeps until a rate-limited candidate has room again; False when that is not worth it."""

Events = AsyncGenerator[d.StreamEvent, None]
"""One target's stream, as the Dispatcher yields it."""

Launch = Callable[[int, d.RouteTarget, d.ProviderSpec],
                  tuple[Coroutine[Any, Any, R | None], Events | None]]
"""Starts the attempt at one target: its coroutine (the answer, or None to move on) and, for
streams, the target's event stream the coroutine reads the first event of."""

_HEDGE_LOST = d.AttemptOutcome.HEDGE_LOST
_UNCHARGED = "hedge_lost"


@dataclass(slots=True, eq=False)
class _Racer(Generic[R]):
    """One target's attempt in the race."""

    index: int
    target: d.RouteTarget
    spec: d.ProviderSpec
    started: float  # time.monotonic()
    task: asyncio.Future[R | None]
    events: Events | None
    hedge: bool  # started by the hedge timer, not by the failover


@dataclass(frozen=True, slots=True)
class Won(Generic[R]):
    """The race's winner: its position in the chain, target, spec, and answer."""

    index: int
    target: d.RouteTarget
    spec: d.ProviderSpec
    result: R


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

        race = _Race(self, policy, request, targets, deadline, chain, launch, stream=False)
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
                result = won.result
                return d.ChatResponse(
                    provider=won.target.provider, model=result.model or won.target.model,
                    result=result, cost_usd=cost_usd(won.spec.model(won.target.model),
                                                     result.usage),
                    latency_s=time.perf_counter() - started, attempts=tuple(chain.attempts),
                    strategy=decision.strategy, rule=decision.rule)
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
            return _first_event(events), events

        race: _Race[d.StreamEvent] = _Race(self, policy, request, targets, deadline, chain,
                                           launch, stream=True)
        won = await race.run(first)
        if won is None:
            return None
        assert won.result is not None and race.winner_events is not None
        return Won(won.index, won.target, won.spec, _resumed(won.result, race.winner_events))

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

    def lost(self, chain: Chain, racer: _Racer[Any], winner: _Racer[Any] | None,
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
            self._metrics.attempts.labels(provider, attempt.outcome).inc()
            if winner is not None:
                self._stats.censored(provider, duration, stream)
        if winner is not None:
            self._uncharged(racer, chain, usage)

    def _uncharged(self, racer: _Racer[Any], chain: Chain, usage: d.Usage | None) -> None:
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

    def raced(self, winner: _Racer[Any] | None) -> None:
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


async def _first_event(events: Events) -> d.StreamEvent | None:
    """The stream's first event, leaving the stream open after it; None when the target
    gave up without one."""
    return await anext(events, None)


async def _resumed(first: d.StreamEvent, events: Events) -> Events:
    """The winner's stream: the event the race took from it, then the rest."""
    async with contextlib.aclosing(events):
        yield first
        async for event in events:
            yield event


class _Race(Generic[R]):
    """One hedged race over the chain's targets."""

    def __init__(self, hedger: Hedger, policy: d.HedgePolicy, request: d.ChatRequest,
                 targets: tuple[d.RouteTarget, ...], deadline: Deadline, chain: Chain,
                 launch: Launch[R], *, stream: bool) -> None:
        self._hedger = hedger
        self._policy = policy
        self._request = request
        self._targets = targets
        self._deadline = deadline
        self._chain = chain
        self._launch = launch
        self._stream = stream
        self._position = 0
        self._hedges = 0
        self._running: list[_Racer[R]] = []
        self._tied: list[_Racer[R]] = []
        self._started: list[_Racer[R]] = []
        self.winner_events: Events | None = None

    async def run(self, first: int) -> Won[R] | None:
        """Race from target `first` on: the first answer, or None when every target failed.
        Errors that end the request propagate; every other racer is cancelled either way."""
        self._position = first
        winner: _Racer[R] | None = None
        try:
            hedge_at = self._hedge_at(self._start(hedge=False))
            while self._running:
                done = await self._next_done(hedge_at)
                if done is None:  # the hedge delay passed without an answer
                    self._hedges += 1
                    hedge_at = self._hedge_at(self._start(hedge=True))
                    continue
                winner = self._winner(done)
                if winner is not None:
                    result = winner.task.result()
                    assert result is not None
                    self.winner_events = winner.events
                    return Won(winner.index, winner.target, winner.spec, result)
                # Each finished racer gave up on its target: the failover goes on with the
                # next one, as it would without hedging.
                for racer in done:
                    replacement = self._start(hedge=racer.hedge)
                    if replacement is not None:
                        hedge_at = self._hedge_at(replacement)
            return None
        finally:
            await self._end(winner)

    def _start(self, *, hedge: bool) -> _Racer[R] | None:
        """Start the next usable target; None when none is left."""
        while self._position < len(self._targets):
            index = self._position
            self._position += 1
            target = self._targets[index]
            spec = self._hedger.usable(target, self._chain, self._deadline)
            if spec is None:
                continue
            coroutine, events = self._launch(index, target, spec)
            racer = _Racer(index, target, spec, time.monotonic(),
                           asyncio.ensure_future(coroutine), events, hedge)
            self._running.append(racer)
            self._started.append(racer)
            if hedge:
                self._hedger.hedged(target.provider)
            return racer
        return None

    def _hedge_at(self, racer: _Racer[R] | None) -> float | None:
        """When to hedge the racer just started (monotonic), if ever: never past the
        deadline, which no hedge could meet."""
        if racer is None:
            return None
        delay = self._hedger.delay_s(self._policy, racer.target.provider, self._stream)
        if delay is None:
            return None
        at = racer.started + delay
        return at if at < self._deadline.expires_at else None

    async def _next_done(self, hedge_at: float | None) -> list[_Racer[R]] | None:
        """The racers that finished, in the order they started; None when the hedge delay
        passed first."""
        timeout = None
        if (hedge_at is not None and self._hedges < self._policy.max_hedges
                and self._position < len(self._targets)):
            timeout = max(0.0, hedge_at - time.monotonic())
        done, _ = await asyncio.wait({racer.task for racer in self._running}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            return None
        finished = [racer for racer in self._running if racer.task in done]
        for racer in finished:
            self._running.remove(racer)
        return finished

    def _winner(self, done: list[_Racer[R]]) -> _Racer[R] | None:
        """The first finished racer with an answer (the rest of those tie and lose); raises
        a racer's error that ends the request when none answered."""
        answered = [racer for racer in done
                    if racer.task.exception() is None and racer.task.result() is not None]
        if answered:
            self._tied.extend(answered[1:])
            return answered[0]
        for racer in done:
            error = racer.task.exception()
            if error is not None:
                raise error
        return None

    async def _end(self, winner: _Racer[R] | None) -> None:
        """Cancel every racer still running, close the losers' streams, record the losses."""
        for racer in self._running:
            racer.task.cancel()
        if self._running:
            await asyncio.wait({racer.task for racer in self._running})
        cancelled = self._sort_out_running()
        for racer in (*cancelled, *self._tied):
            if racer.events is not None:
                await racer.events.aclose()  # a tied loser waits at its first event
        for racer in cancelled:
            self._hedger.lost(self._chain, racer, winner, None, self._stream)
        for racer in self._tied:
            self._hedger.lost(self._chain, racer, winner, _usage(racer.task.result()),
                              self._stream)
        if any(racer.hedge for racer in self._started):
            self._hedger.raced(winner)

    def _sort_out_running(self) -> list[_Racer[R]]:
        """After the cancel: the racers it stopped. One that finished meanwhile either
        answered (a tie: it loses) or gave up by itself (the Dispatcher recorded that)."""
        cancelled: list[_Racer[R]] = []
        for racer in self._running:
            task = racer.task
            if task.cancelled():
                cancelled.append(racer)
            elif task.exception() is None and task.result() is not None:
                self._tied.append(racer)
        for racer in self._started:
            if racer.task.done() and not racer.task.cancelled():
                racer.task.exception()  # retrieved: the race already used what mattered
        return cancelled


def _usage(result: object) -> d.Usage | None:
    """A tied loser's usage: known when it answered completely (the Dispatcher recorded its
    success then), unknown when it only sent its first delta."""
    if isinstance(result, d.ChatResult | d.StreamFinish):
        return result.usage
    return None
