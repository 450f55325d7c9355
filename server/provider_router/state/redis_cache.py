"""Redis backend: values with a TTL (SET PX) under a key prefix, shared by every replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provider_router.cache.base import CacheBackendError
from provider_router.state.redis_link import FAILURES

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisCache:
    """Entries live in Redis under `prefix`; Redis expires them (and evicts them by its own
    maxmemory policy, which is where the byte budget of a shared cache belongs)."""

    def __init__(self, client: Redis, prefix: str, owns_client: bool = True) -> None:
        self._client = client
        self._prefix = prefix
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisCache:
        """A cache with its own connection pool to `url` (connects on first use)."""
        from redis.asyncio import Redis

        # Short timeouts: a slow cache must not hold a request longer than the provider would.
        client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return cls(client, prefix)

    @property
    def client(self) -> Redis:
        """The Redis client in use (the process's shared one, or this cache's own)."""
        return self._client

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, None when absent or expired."""
        try:
            value = await self._client.get(self._prefix + key)
        except FAILURES as error:
            raise CacheBackendError(f"redis GET failed: {error}") from error
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store with a TTL in milliseconds (at least 1)."""
        try:
            await self._client.set(self._prefix + key, value, px=max(1, round(ttl_s * 1000)))
        except FAILURES as error:
            raise CacheBackendError(f"redis SET failed: {error}") from error

    async def aclose(self) -> None:
        """Close the connection pool when this cache made it."""
        if self._owns_client:
            await self._client.aclose()
