"""One deadline per request, spent across the whole failover chain."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point on the monotonic clock by which a request must be done."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        """Whether no time is left."""
        return time.monotonic() >= self.expires_at

    def cap(self, seconds: float | None) -> float:
        """`seconds` limited to what is left; what is left when `seconds` is None."""
        left = self.remaining()
        return left if seconds is None else min(seconds, left)
