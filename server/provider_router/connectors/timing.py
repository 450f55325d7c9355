"""Per-phase timeouts of one provider call, all capped by the request's deadline.

A streaming call lives through phases: `connect` (TCP/TLS, enforced by the HTTP client),
`first_token` (from the start of the call until the first delta), then `idle` (the gap
between chunks once deltas flow). `total` bounds the whole call and is itself capped by
the deadline. A unary call has only `connect` and `total`: its body arrives all at once,
so there is no first token to wait for separately.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from provider_router.domain import ProviderTimeouts
from provider_router.errors import ProviderTimeoutError
from provider_router.resilience.deadline import Deadline

T = TypeVar("T")

# Used only when neither the spec nor the server config gives a value.
_FALLBACK = ProviderTimeouts(connect=5.0, first_token=10.0, idle=30.0, total=300.0)


@dataclass(frozen=True, slots=True)
class PhaseTimeouts:
    """Resolved per-phase timeouts in seconds."""

    connect: float
    first_token: float
    idle: float
    total: float

    @classmethod
    def resolve(cls, spec: ProviderTimeouts, default: ProviderTimeouts) -> PhaseTimeouts:
        """The spec's value per phase, else the server default, else a built-in one."""
        def pick(own: float | None, server: float | None, fallback: float | None) -> float:
            for value in (own, server, fallback):
                if value is not None and value > 0:
                    return value
            return 30.0

        return cls(
            connect=pick(spec.connect, default.connect, _FALLBACK.connect),
            first_token=pick(spec.first_token, default.first_token, _FALLBACK.first_token),
            idle=pick(spec.idle, default.idle, _FALLBACK.idle),
            total=pick(spec.total, default.total, _FALLBACK.total),
        )


class PhaseClock:
    """Tracks which phase a call is in and bounds each wait by that phase's budget."""

    __slots__ = ("_idle", "_phase", "_phase_end", "_phase_limit", "_provider", "_streaming",
                 "_total_end", "_total_limit")

    def __init__(self, provider: str, timeouts: PhaseTimeouts, deadline: Deadline, *,
                 streaming: bool) -> None:
        now = time.monotonic()
        self._provider = provider
        self._streaming = streaming
        self._idle = timeouts.idle
        self._total_limit = deadline.cap(timeouts.total)
        self._total_end = now + self._total_limit
        if streaming:
            self._phase, self._phase_limit = "first_token", timeouts.first_token
        else:
            self._phase, self._phase_limit = "total", self._total_limit
        self._phase_end = now + self._phase_limit

    def budget(self) -> tuple[float, str, float]:
        """Seconds the next wait may take, the phase that bounds it, and that phase's limit."""
        now = time.monotonic()
        phase_left = self._phase_end - now
        total_left = self._total_end - now
        if phase_left < total_left:
            return phase_left, self._phase, self._phase_limit
        return total_left, "total", self._total_limit

    def window(self) -> tuple[float, str, float]:
        """The budget of the wait about to start (see `wait`), never negative: seconds, the
        phase that bounds it, and that phase's limit."""
        if self._phase == "idle":
            self._phase_end = time.monotonic() + self._idle
        left, phase, limit = self.budget()
        return max(0.0, left), phase, limit

    def expired(self, phase: str, limit: float) -> ProviderTimeoutError:
        """The error for a wait that outlived its window."""
        return ProviderTimeoutError(self._provider, phase, limit)

    def saw_delta(self) -> None:
        """A delta reached the caller: the first-token phase is over (streaming calls only)."""
        if not self._streaming:
            return
        self._phase, self._phase_limit = "idle", self._idle
        self._phase_end = time.monotonic() + self._idle

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await within the current budget; raises ProviderTimeoutError when it runs out.

        In the idle phase every wait is a wait for the next chunk, so the idle window starts
        now: time our consumer spent with the last delta is not the provider's silence.
        A caller's cancellation is never turned into a timeout: asyncio.timeout tells
        its own expiry apart from an outside cancel.
        """
        left, phase, limit = self.window()
        scope = asyncio.timeout(left)
        try:
            async with scope:
                return await awaitable
        except TimeoutError:
            if scope.expired():
                raise self.expired(phase, limit) from None
            raise

    async def sleep(self, seconds: float) -> None:
        """Sleep as a slow provider would, within the current budget."""
        await self.wait(asyncio.sleep(seconds))
