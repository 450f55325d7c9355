"""The Router with the response cache in front of Chat and StreamChat.

The composition root builds this class instead of Router only when `[cache] enabled`: a
server without a cache runs Router's own methods, untouched. Per request: decide once (the
key needs the resolved target), look the key up (modes read/on), on a miss run the normal
chain with that same decision, and store the complete answer (modes write/on) under the
target that actually answered. A backend failure is a logged miss, never a failed request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from provider_router import domain as d
from provider_router.cache import codec, policy, replay
from provider_router.cache.base import CacheBackend, CacheBackendError, CachedAnswer
from provider_router.cache.key import cache_key, cache_scope
from provider_router.cache.settings import CacheSettings
from provider_router.resilience.deadline import Deadline
from provider_router.routing.router import Router

log = logging.getLogger(__name__)

class CachingRouter(Router):
    """A Router that answers repeated deterministic requests from the response cache."""

    def __init__(self, backend: CacheBackend, settings: CacheSettings, *args: Any,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # Router's own arguments
        self._backend = backend
        self._settings = settings

    def _mode(self, request: d.ChatRequest) -> d.CacheMode | None:
        """The request's mode, None when it bypasses the cache."""
        mode = policy.request_mode(request, self._settings)
        if mode is d.CacheMode.OFF:
            return None
        refusal = policy.request_refusal(request, self._settings)
        if refusal:
            self._metrics.cache_skips.labels(refusal).inc()
            return None
        return mode

    async def _lookup(self, request: d.ChatRequest, target: d.RouteTarget
                      ) -> CachedAnswer | None:
        key = cache_key(request, target, cache_scope(request))
        try:
            data = await self._backend.get(key)
        except CacheBackendError as error:
            log.warning("response cache read failed (served uncached): %s", error)
            self._metrics.cache_lookups.labels("error").inc()
            return None
        answer = codec.decode(data) if data is not None else None
        self._metrics.cache_lookups.labels("miss" if answer is None else "hit").inc()
        if answer is not None and answer.cost_usd:
            self._metrics.cache_saved_usd.inc(answer.cost_usd)
        return answer

    async def _store(self, request: d.ChatRequest, target: d.RouteTarget,
                     answer: CachedAnswer) -> None:
        data = codec.encode(answer)
        refusal = policy.answer_refusal(answer, len(data), self._settings)
        if refusal:
            self._metrics.cache_skips.labels(refusal).inc()
            return
        key = cache_key(request, target, cache_scope(request))
        try:
            await self._backend.set(key, data, policy.ttl_s(request, self._settings))
        except CacheBackendError as error:
            log.warning("response cache write failed (answer not cached): %s", error)
            self._metrics.cache_skips.labels("backend_error").inc()
            return
        self._metrics.cache_stores.inc()

    async def chat(self, request: d.ChatRequest, deadline: Deadline,
                   decision: d.RouteDecision | None = None) -> d.ChatResponse:
        """Chat's answer from the cache, or from the chain (then stored)."""
        mode = self._mode(request)
        if mode is None:
            return await super().chat(request, deadline, decision)
        started = time.perf_counter()
        if decision is None:
            decision = await self._decide(request, deadline)
        if mode.reads:
            answer = await self._lookup(request, decision.chosen)
            if answer is not None:
                return replay.to_response(answer, decision, started)
        response = await super().chat(request, deadline, decision)
        if mode.writes:
            await self._store(request, *replay.from_response(response))
        return response

    def stream(self, request: d.ChatRequest, deadline: Deadline,
               decision: d.RouteDecision | None = None
               ) -> AsyncGenerator[d.RouterStreamEvent, None]:
        """StreamChat's events: a replayed stream on a hit, else the live one (stored when it
        ends cleanly; a stream that breaks or is abandoned stores nothing)."""
        mode = self._mode(request)
        if mode is None:
            return super().stream(request, deadline, decision)
        return self._cached_stream(request, deadline, mode, decision)

    async def _cached_stream(self, request: d.ChatRequest, deadline: Deadline,
                             mode: d.CacheMode, decision: d.RouteDecision | None
                             ) -> AsyncGenerator[d.RouterStreamEvent, None]:
        started = time.perf_counter()
        if decision is None:
            decision = await self._decide(request, deadline)
        if mode.reads:
            answer = await self._lookup(request, decision.chosen)
            if answer is not None:
                for event in replay.to_events(answer, decision, started):
                    yield event
                return
        capture = replay.StreamCapture() if mode.writes else None
        async with contextlib.aclosing(super().stream(request, deadline, decision)) as events:
            async for event in events:
                if capture is not None:
                    if isinstance(event, d.StreamEnded):
                        # Stored before the end goes out: a caller leaving on it stops us.
                        await self._store_stream(request, capture, event)
                    else:
                        capture.add(event)
                yield event

    async def _store_stream(self, request: d.ChatRequest, capture: replay.StreamCapture,
                            end: d.StreamEnded) -> None:
        if capture.continued(end):
            self._metrics.cache_skips.labels("continued").inc()
            return
        await self._store(request, *capture.answer(end))
