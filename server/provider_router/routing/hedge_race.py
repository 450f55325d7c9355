"""The race of a hedged request (routing/hedge.py): racers, the hedge timer, the winner.

The targets of the failover chain start one at a time: the first at once, the next when the
delay of the one started last has passed (up to `max_hedges`), or when a racer gives up on
its target (the failover). The first racer with an answer wins; every other one is
cancelled, its stream closed, and reported to the referee (the Hedger) as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from provider_router import domain as d
from provider_router.resilience.deadline import Deadline
from provider_router.routing.dispatch import Chain

R = TypeVar("R")

Events = AsyncGenerator[d.StreamEvent, None]
"""One target's stream, as the Dispatcher yields it."""

Launch = Callable[[int, d.RouteTarget, d.ProviderSpec],
                  tuple[Coroutine[Any, Any, R | None], Events | None]]
"""Starts the attempt at one target: its coroutine (the answer, or None to move on) and, for
streams, the target's event stream the coroutine reads the first event of."""


@dataclass(slots=True, eq=False)
class Racer(Generic[R]):
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


class Referee(Protocol):
    """What the race asks of the Hedger, and what it reports to it."""

    def usable(self, target: d.RouteTarget, chain: Chain, deadline: Deadline
               ) -> d.ProviderSpec | None:
        """The target's spec if it is worth an attempt."""
        ...

    def delay_s(self, policy: d.HedgePolicy, provider: str, stream: bool) -> float | None:
        """Seconds to wait for a target before hedging it; None: never."""
        ...

    def hedged(self, provider: str) -> None:
        """A hedge started."""
        ...

    def lost(self, chain: Chain, racer: Racer[Any], winner: Racer[Any] | None,
             usage: d.Usage | None, stream: bool) -> None:
        """A racer did not win."""
        ...

    def raced(self, winner: Racer[Any] | None) -> None:
        """A race in which a hedge fired ended."""
        ...


async def first_event(events: Events) -> d.StreamEvent | None:
    """The stream's first event, leaving the stream open after it; None when the target
    gave up without one."""
    return await anext(events, None)


async def resumed(first: d.StreamEvent, events: Events) -> Events:
    """The winner's stream: the event the race took from it, then the rest."""
    async with contextlib.aclosing(events):
        yield first
        async for event in events:
            yield event


class Race(Generic[R]):
    """One hedged race over the chain's targets."""

    def __init__(self, referee: Referee, policy: d.HedgePolicy,
                 targets: tuple[d.RouteTarget, ...], deadline: Deadline, chain: Chain,
                 launch: Launch[R], *, stream: bool) -> None:
        self._referee = referee
        self._policy = policy
        self._targets = targets
        self._deadline = deadline
        self._chain = chain
        self._launch = launch
        self._stream = stream
        self._position = 0
        self._hedges = 0
        self._running: list[Racer[R]] = []
        self._tied: list[Racer[R]] = []
        self._started: list[Racer[R]] = []
        self.winner_events: Events | None = None

    async def run(self, first: int) -> Won[R] | None:
        """Race from target `first` on: the first answer, or None when every target failed.
        Errors that end the request propagate; every other racer is cancelled either way."""
        self._position = first
        winner: Racer[R] | None = None
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

    def _start(self, *, hedge: bool) -> Racer[R] | None:
        """Start the next usable target; None when none is left."""
        while self._position < len(self._targets):
            index = self._position
            self._position += 1
            target = self._targets[index]
            spec = self._referee.usable(target, self._chain, self._deadline)
            if spec is None:
                continue
            coroutine, events = self._launch(index, target, spec)
            racer = Racer(index, target, spec, time.monotonic(),
                           asyncio.ensure_future(coroutine), events, hedge)
            self._running.append(racer)
            self._started.append(racer)
            if hedge:
                self._referee.hedged(target.provider)
            return racer
        return None

    def _hedge_at(self, racer: Racer[R] | None) -> float | None:
        """When to hedge the racer just started (monotonic), if ever: never past the
        deadline, which no hedge could meet."""
        if racer is None:
            return None
        delay = self._referee.delay_s(self._policy, racer.target.provider, self._stream)
        if delay is None:
            return None
        at = racer.started + delay
        return at if at < self._deadline.expires_at else None

    async def _next_done(self, hedge_at: float | None) -> list[Racer[R]] | None:
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

    def _winner(self, done: list[Racer[R]]) -> Racer[R] | None:
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

    async def _end(self, winner: Racer[R] | None) -> None:
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
            self._referee.lost(self._chain, racer, winner, None, self._stream)
        for racer in self._tied:
            self._referee.lost(self._chain, racer, winner, usage_of(racer.task.result()),
                              self._stream)
        if any(racer.hedge for racer in self._started):
            self._referee.raced(winner)

    def _sort_out_running(self) -> list[Racer[R]]:
        """After the cancel: the racers it stopped. One that finished meanwhile either
        answered (a tie: it loses) or gave up by itself (the Dispatcher recorded that)."""
        cancelled: list[Racer[R]] = []
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


def usage_of(result: object) -> d.Usage | None:
    """A tied loser's usage: known when it answered completely (the Dispatcher recorded its
    success then), unknown when it only sent its first delta."""
    if isinstance(result, d.ChatResult | d.StreamFinish):
        return result.usage
    return None
