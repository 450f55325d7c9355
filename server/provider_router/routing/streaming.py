"""StreamChat's failover chain and its recovery from a stream broken mid-answer.

Before the first delta reaches the caller the chain fails over freely. After that, a broken
stream is handled by the configured policy (`[resilience] stream_recovery`):

- `continue`: the next candidate that accepts an assistant prefill continues from the partial
  answer, seamlessly (no restart event); a candidate that cannot (its API takes no prefill,
  the answer broke inside a tool call, or it rejects the prefill) restarts instead;
- `restart`: a `restart` event tells the caller to discard what it has, and the next
  candidate streams the whole answer;
- `fail`: the stream ends with UNAVAILABLE saying how many deltas were delivered.

Whatever the policy, a truncated answer never ends with OK.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field, replace

from provider_router import domain as d
from provider_router.errors import (
    ProviderRejectedError,
    RouterError,
    StreamBrokenError,
)
from provider_router.resilience.deadline import Deadline
from provider_router.routing.dispatch import BrokenStreamError, Chain, Dispatcher
from provider_router.routing.hedge import Hedger

SpecLookup = Callable[[str], d.ProviderSpec | None]
"""The current spec of a provider by name (None once unregistered)."""

CostFn = Callable[[d.ProviderSpec, str, d.Usage], float | None]
"""Cost in USD of an answer from a provider's model, None when the price is unknown."""

Opened = tuple[int, d.ProviderSpec, d.RouteTarget, AsyncGenerator[d.StreamEvent, None]]
"""Where a stream was opened: the target's position in the chain, spec, target, events."""

# Kinds whose API continues a final assistant message instead of answering it again.
PREFILL_KINDS = frozenset({d.ProviderKind.ANTHROPIC, d.ProviderKind.MOCK})


@dataclass(slots=True)
class StreamRun:
    """Progress of one StreamChat across all its attempts."""

    started_at: float
    decision: d.RouteDecision
    chain: Chain
    started: bool = False
    finished: bool = False
    delivered: int = 0
    first_delta_at: float | None = None
    partial: list[str] = field(default_factory=list)
    partial_has_tools: bool = False
    restart_reason: str = ""
    broken_at: str = ""
    # Hedged until the first event (routing/hedge.py); None: not hedged.
    hedge: d.HedgePolicy | None = None

    def delta(self, event: d.TextDelta | d.ToolCallDelta) -> None:
        """A delta reached the caller."""
        self.delivered += 1
        if self.first_delta_at is None:
            self.first_delta_at = time.perf_counter()
        if isinstance(event, d.TextDelta):
            self.partial.append(event.text)
        else:
            self.partial_has_tools = True


async def _no_events() -> AsyncGenerator[d.StreamEvent, None]:
    """A stream that ends at once."""
    return
    yield  # pragma: no cover - makes this an async generator


def with_prefill(request: d.ChatRequest, partial: str) -> d.ChatRequest:
    """The request extended with the partial answer as an assistant message to continue."""
    prefill = d.ChatMessage(role=d.Role.ASSISTANT, content=partial)
    return replace(request, messages=(*request.messages, prefill))


class StreamChain:
    """Runs StreamChat over the planner's targets."""

    def __init__(self, dispatcher: Dispatcher, policy: str,
                 specs: SpecLookup, hedger: Hedger | None = None) -> None:
        self._dispatcher = dispatcher
        self._policy = policy
        self._specs = specs
        self._hedger = hedger

    async def run(self, request: d.ChatRequest, targets: tuple[d.RouteTarget, ...],
                  run: StreamRun, deadline: Deadline, cost: CostFn
                  ) -> AsyncGenerator[d.RouterStreamEvent, None]:
        """Yield router stream events until the answer is complete, or raise."""
        index = 0
        while index < len(targets) and not run.finished:
            target = targets[index]
            spec = self._dispatcher.usable(self._specs(target.provider), target, run.chain,
                                           deadline)
            if spec is None:
                index += 1
                continue
            current = self._request_for(request, spec, run)
            if run.hedge is not None and not run.started:
                # Raced until one target sends its first event; then an ordinary stream.
                index, spec, target, events = await self._race(run, current, targets, index,
                                                               spec, deadline)
            else:
                events = self._dispatcher.stream(spec, target, current, deadline,
                                                 len(targets) - index - 1, run.chain)
            try:
                # Relayed inline, not through a generator of its own: a layer costs a
                # resumption per event of every stream.
                async with contextlib.aclosing(events) as upstream:
                    async for event in upstream:
                        if run.started and not run.restart_reason and not isinstance(
                                event, d.StreamFinish):
                            run.delta(event)  # a delta mid-stream, nearly every event
                            yield event
                            continue
                        for out in self._relay(event, spec, target, run, cost):
                            yield out
            except ProviderRejectedError as error:
                self._refused(run, target, error, prefilled=current is not request)
                continue
            except BrokenStreamError as broken:
                self._recover(run, targets, index, broken)
            index += 1
        unfinished = self._unfinished(run)
        if unfinished is not None:
            raise unfinished

    @staticmethod
    def _refused(run: StreamRun, target: d.RouteTarget, error: ProviderRejectedError, *,
                 prefilled: bool) -> None:
        """A target rejected the request: re-raised, unless it was a fallback refusing the
        prefill, which restarts on the same target instead."""
        if not prefilled:
            raise error
        run.restart_reason = f"{run.broken_at}; {target.provider} refused continuation"

    async def _race(self, run: StreamRun, request: d.ChatRequest,
                    targets: tuple[d.RouteTarget, ...], index: int, spec: d.ProviderSpec,
                    deadline: Deadline) -> Opened:
        """The hedged start of a stream (routing/hedge.py): the winner's position, spec,
        target and events; past the end of the chain when every target gave up."""
        assert self._hedger is not None and run.hedge is not None  # set by the router
        won = await self._hedger.stream(run.hedge, request, targets, index, deadline, run.chain)
        if won is None:
            return len(targets), spec, targets[index], _no_events()
        return won.index, won.spec, won.target, won.result

    def _relay(self, event: d.StreamEvent, spec: d.ProviderSpec, target: d.RouteTarget,
               run: StreamRun, cost: CostFn) -> list[d.RouterStreamEvent]:
        out: list[d.RouterStreamEvent] = []
        if not run.started:
            run.started = True
            out.append(d.StreamStarted(target.provider, target.model, run.decision.strategy,
                                       run.decision.rule))
        if run.restart_reason:
            out.append(d.StreamRestarted(run.restart_reason, target.provider, target.model))
            run.restart_reason = ""
            run.partial.clear()
            run.partial_has_tools = False
        if isinstance(event, d.StreamFinish):
            run.finished = True
            out.append(self._ended(spec, target, event, run, cost))
        else:
            run.delta(event)
            out.append(event)
        return out

    def _ended(self, spec: d.ProviderSpec, target: d.RouteTarget, finish: d.StreamFinish,
               run: StreamRun, cost: CostFn) -> d.StreamEnded:
        now = time.perf_counter()
        return d.StreamEnded(
            provider=target.provider, model=finish.model or target.model,
            finish_reason=finish.finish_reason, usage=finish.usage,
            cost_usd=cost(spec, target.model, finish.usage),
            attempts=tuple(run.chain.attempts), latency_s=now - run.started_at,
            time_to_first_token_s=(run.first_delta_at or now) - run.started_at)

    def _recover(self, run: StreamRun, targets: tuple[d.RouteTarget, ...], index: int,
                 broken: BrokenStreamError) -> None:
        """Note a stream broken mid-answer; raise unless the policy lets a later target
        take over (how it does is decided per target, by `_request_for`)."""
        target = targets[index]
        run.broken_at = (f"{target.provider}/{target.model} broke after {broken.delivered} "
                         f"deltas: {broken.error.reason}")
        if self._policy == "fail" or index + 1 >= len(targets):
            raise StreamBrokenError(f"stream broken mid-answer: {run.broken_at}", run.delivered,
                                    tuple(run.chain.attempts)) from broken

    def _request_for(self, request: d.ChatRequest, spec: d.ProviderSpec,
                     run: StreamRun) -> d.ChatRequest:
        """What to send the next target: the request itself, or, while the caller holds part
        of a broken answer, the partial answer as a prefill when the policy is `continue` and
        this target's API continues it. Any other target restarts the answer.

        Decided per target, not at the break: if the target that could continue fails too,
        the next one may not be able to, and appending its whole answer to the partial one
        would be a garbled answer ending with OK.
        """
        holding = bool(run.partial) or run.partial_has_tools
        if not run.broken_at or run.restart_reason or not holding:
            return request  # nothing to recover, or a restart is already announced
        if (self._policy == "continue" and not run.partial_has_tools
                and spec.kind in PREFILL_KINDS):
            return with_prefill(request, "".join(run.partial))
        run.restart_reason = run.broken_at
        return request

    @staticmethod
    def _unfinished(run: StreamRun) -> RouterError | None:
        """A StreamBrokenError when deltas went out but the answer never completed."""
        if run.finished:
            return None
        if run.delivered or run.broken_at:
            return StreamBrokenError(f"stream broken mid-answer and no fallback completed it: "
                                     f"{run.broken_at}", run.delivered, tuple(run.chain.attempts))
        return None
