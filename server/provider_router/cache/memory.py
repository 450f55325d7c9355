"""In-process backend: an LRU bounded by bytes, with per-entry expiry on an injectable clock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds."""

EvictionHook = Callable[[str], None]
"""Called with the reason ("size" or "expired") whenever an entry is dropped."""


class MemoryCache:
    """Least recently used entries go first once the stored bytes exceed `max_bytes`."""

    def __init__(self, max_bytes: int, clock: Clock = time.monotonic,
                 on_evict: EvictionHook | None = None) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._on_evict = on_evict
        # key -> (value, expires at); order is recency, oldest first.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _cost(key: str, value: bytes) -> int:
        return len(key) + len(value)

    def _drop(self, key: str, reason: str) -> None:
        value, _ = self._entries.pop(key)
        self.size -= self._cost(key, value)
        if self._on_evict is not None:
            self._on_evict(reason)

    async def get(self, key: str) -> bytes | None:
        """The live value under `key`; an expired one is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key, "expired")
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store, then evict least recently used entries until the bytes fit. A value larger
        than the whole budget is not stored (it would evict everything and then itself)."""
        cost = self._cost(key, value)
        if key in self._entries:
            self._drop(key, "replaced")
        if cost > self.max_bytes:
            return
        self._entries[key] = (value, self._clock() + ttl_s)
        self.size += cost
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)), "size")

    async def aclose(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.size = 0
