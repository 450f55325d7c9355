"""The backend a [cache] url names, chosen by scheme like the state store."""

from __future__ import annotations

from provider_router.cache.base import CacheBackend
from provider_router.cache.memory import EvictionHook, MemoryCache
from provider_router.cache.settings import CacheSettings


def open_cache(settings: CacheSettings, on_evict: EvictionHook | None = None) -> CacheBackend:
    """memory:// → an in-process LRU; redis:// (rediss://, unix://) → a shared Redis."""
    if settings.url.startswith("memory://"):
        return MemoryCache(settings.max_bytes, on_evict=on_evict)
    # Imported here: the redis package is only needed when a redis:// cache is configured.
    from provider_router.state.redis_cache import RedisCache

    return RedisCache.from_url(settings.url, settings.key_prefix)
