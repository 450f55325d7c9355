"""[cache]: whether the response cache exists, its default mode, TTL, size and backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provider_router import domain as d
from provider_router.config_values import as_table, boolean, choice, number, text
from provider_router.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """[cache]: off unless `enabled`; `mode` is what a request that says nothing gets."""

    enabled: bool = False
    mode: d.CacheMode = d.CacheMode.ON
    ttl_s: float = 3600.0
    url: str = "memory://"
    # Memory backend: the LRU's byte budget. Both backends: the largest answer stored.
    max_bytes: int = 64 * MIB
    max_entry_bytes: int = MIB
    # Sampled answers (temperature unset or > 0) and answers that call tools are not cached
    # unless these say so (a request can ask for sampled answers with cache_sampled).
    sampled: bool = False
    tool_calls: bool = False
    key_prefix: str = "provider-router:cache:"


def parse_cache_settings(raw: Mapping[str, object]) -> CacheSettings:
    """Validate the [cache] table."""
    t = as_table(raw, "cache")
    default = CacheSettings()
    settings = CacheSettings(
        enabled=boolean(t, "enabled", default.enabled),
        mode=d.CacheMode(choice(t, "mode", default.mode.value, [m.value for m in d.CacheMode])),
        ttl_s=number(t, "ttl", default.ttl_s, low=0.001),
        url=text(t, "url", default.url),
        max_bytes=int(number(t, "max_bytes", default.max_bytes, low=1, integer=True)),
        max_entry_bytes=int(number(t, "max_entry_bytes", default.max_entry_bytes, low=1,
                                   integer=True)),
        sampled=boolean(t, "sampled", default.sampled),
        tool_calls=boolean(t, "tool_calls", default.tool_calls),
        key_prefix=text(t, "key_prefix", default.key_prefix),
    )
    t.done()
    if not settings.url.startswith(("memory://", "redis://", "rediss://", "unix://")):
        raise ConfigError("cache.url", settings.url, "a memory:// or redis:// URI")
    return settings
