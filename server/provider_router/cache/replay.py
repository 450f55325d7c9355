"""Answers ↔ cache entries: capture a unary answer or a finished stream; replay either way.

A hit charges the caller nothing (cost 0) and reports the original answer's usage, so token
accounting still shows what the answer is worth; it lists no attempts (no provider was called).
"""

from __future__ import annotations

import time

from provider_router import domain as d
from provider_router.cache.base import CachedAnswer


def from_response(response: d.ChatResponse) -> tuple[d.RouteTarget, CachedAnswer]:
    """The answering target and the entry for a unary answer."""
    result = response.result
    target = answering_target(response.provider, response.model, response.attempts)
    return target, CachedAnswer(
        provider=response.provider, model=response.model, target_model=target.model,
        chunks=(result.text,) if result.text else (), finish_reason=result.finish_reason,
        usage=result.usage, tool_calls=result.tool_calls, response_id=result.response_id,
        cost_usd=response.cost_usd)


def to_response(answer: CachedAnswer, decision: d.RouteDecision, started: float
                ) -> d.ChatResponse:
    """A cache hit as Chat's answer."""
    result = d.ChatResult(answer.model, answer.text, answer.finish_reason, answer.usage,
                          answer.tool_calls, answer.response_id)
    return d.ChatResponse(answer.provider, answer.model, result, 0.0,
                          time.perf_counter() - started, (), decision.strategy, decision.rule,
                          cached=True)


def to_events(answer: CachedAnswer, decision: d.RouteDecision, started: float
              ) -> list[d.RouterStreamEvent]:
    """A cache hit as StreamChat's events: start, the original deltas, end."""
    events: list[d.RouterStreamEvent] = [
        d.StreamStarted(answer.provider, answer.target_model, decision.strategy, decision.rule,
                        cached=True)]
    events.extend(d.TextDelta(chunk) for chunk in answer.chunks)
    events.extend(d.ToolCallDelta(i, c.id, c.name, c.arguments_json)
                  for i, c in enumerate(answer.tool_calls))
    now = time.perf_counter()
    events.append(d.StreamEnded(answer.provider, answer.model, answer.finish_reason,
                                answer.usage, 0.0, (), now - started, now - started,
                                cached=True))
    return events


def answering_target(provider: str, model: str, attempts: tuple[d.Attempt, ...]
                     ) -> d.RouteTarget:
    """The target that produced an answer: its successful attempt (searched from the end:
    attempts that lost a race may be recorded after it)."""
    for attempt in reversed(attempts):
        if attempt.outcome is d.AttemptOutcome.SUCCESS and attempt.provider == provider:
            return d.RouteTarget(attempt.provider, attempt.model)
    return d.RouteTarget(provider, model)


class StreamCapture:
    """Collects a live stream's answer as the caller sees it (a restart starts it over)."""

    __slots__ = ("_calls", "_chunks", "restarted")

    def __init__(self) -> None:
        self._chunks: list[str] = []
        # index -> [id, name, arguments]
        self._calls: dict[int, list[str]] = {}
        self.restarted = False

    def add(self, event: d.RouterStreamEvent) -> None:
        """Note one event before the end."""
        if isinstance(event, d.TextDelta):
            self._chunks.append(event.text)
        elif isinstance(event, d.ToolCallDelta):
            call = self._calls.setdefault(event.index, ["", "", ""])
            call[0] = call[0] or event.id
            call[1] = call[1] or event.name
            call[2] += event.arguments_fragment
        elif isinstance(event, d.StreamRestarted):
            self._chunks.clear()
            self._calls.clear()
            self.restarted = True

    def continued(self, end: d.StreamEnded) -> bool:
        """Whether a broken stream was continued by another provider without a restart:
        the text is then two providers' work, and no one target's answer to store."""
        return not self.restarted and any(
            a.outcome is d.AttemptOutcome.STREAM_BROKEN for a in end.attempts)

    def answer(self, end: d.StreamEnded) -> tuple[d.RouteTarget, CachedAnswer]:
        """The answering target and the complete answer, once the stream ended cleanly."""
        target = answering_target(end.provider, end.model, end.attempts)
        calls = tuple(d.ToolCall(*self._calls[i]) for i in sorted(self._calls))
        return target, CachedAnswer(
            provider=end.provider, model=end.model, target_model=target.model,
            chunks=tuple(self._chunks), finish_reason=end.finish_reason, usage=end.usage,
            tool_calls=calls, cost_usd=end.cost_usd)
