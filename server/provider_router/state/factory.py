"""Opens the state store a URI names, by scheme (like the `limits` library's storages)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from provider_router.errors import ConfigError
from provider_router.state.base import StateStore
from provider_router.state.memory import MemoryStateStore
from provider_router.state.redis import DEFAULT_KEY_PREFIX, RedisStateStore
from provider_router.state.redis_link import RedisLink
from provider_router.state.urls import REDIS_SCHEMES, redacted


def open_state_store(url: str, registry_file: Path | None, link: RedisLink | None = None,
                     key_prefix: str = DEFAULT_KEY_PREFIX) -> StateStore:
    """The store for `url`: `memory://` persists to `registry_file`; `redis://` and
    `rediss://` use `link`, the process's one connection to that Redis."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStateStore(registry_file)
    if scheme in REDIS_SCHEMES:
        if link is None:
            raise ValueError("a Redis state store needs the process's RedisLink")
        return RedisStateStore(link, key_prefix)
    raise ConfigError("state.url", redacted(url), "a memory:// or redis:// (rediss:// for TLS) URI")
