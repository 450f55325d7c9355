"""The response cache's backend protocol and what it stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from provider_router import domain as d


class CacheBackendError(Exception):
    """The backend could not be reached or failed; the caller treats it as a miss."""


class CacheBackend(Protocol):
    """Bytes by key with a time to live: memory (cache/memory.py) or Redis
    (state/redis_cache.py: only state/ talks to Redis)."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, None when absent or expired; raises
        CacheBackendError when the backend fails."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store `value` under `key` for `ttl_s` seconds; raises CacheBackendError when the
        backend fails."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A complete answer as the cache keeps it; replayed unary or as a stream."""

    provider: str
    # The model the provider reported, and the configured model the router targeted.
    model: str
    target_model: str
    # The text as it was delivered: one chunk for a unary answer, the deltas of a stream.
    chunks: tuple[str, ...]
    finish_reason: d.FinishReason
    usage: d.Usage
    tool_calls: tuple[d.ToolCall, ...] = ()
    response_id: str = ""
    # What the original answer cost (what a hit saves).
    cost_usd: float | None = None

    @property
    def text(self) -> str:
        """The whole answer text."""
        return "".join(self.chunks)
