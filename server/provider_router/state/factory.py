"""Choose a StateStore backend by URI scheme, like the `limits` library's storage URIs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from provider_router.errors import ConfigError
from provider_router.state.base import StateStore
from provider_router.state.memory import MemoryStateStore


def open_state_store(url: str, registry_file: Path | None) -> StateStore:
    """The store for `url`: `memory://` (registrations persisted to `registry_file`)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStateStore(registry_file)
    if scheme in ("redis", "rediss", "unix"):
        raise ConfigError("state.url", url, "memory:// (redis:// arrives with the Redis backend)")
    raise ConfigError("state.url", url, "a memory:// or redis:// URI")
