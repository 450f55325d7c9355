"""The StateStore protocol: where runtime state lives, behind one async interface.

Backends are chosen by URI scheme (`open_state_store`, in state/factory.py): `memory://`
keeps state in the process and persists runtime registrations to a local file; `redis://` and
`rediss://` share it across replicas (state/redis.py, over one RedisLink per process).

What a store holds today: the providers registered at runtime (Register/Unregister), and a
change feed so every replica applies the others' registrations.

Room left for the resilience work, to be added as separate, optional protocols beside this one
so that existing backends keep type-checking:
- breaker state: `get_breaker(name) -> BreakerRecord` / `set_breaker(name, record)`, so an
  open breaker on one replica is open on all;
- rate-limit counters: `hit(key, cost, window_s, limit) -> (allowed, retry_after_s)`, atomic
  (a Lua script on Redis);
- shared stats: `publish_stats(name, sample)` / `shared_stats(name)`, so latency routing sees
  what every replica measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from provider_router.domain import ProviderSpec


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store works, and if not, why (shown in health and metrics)."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProviderChange:
    """A registration changed elsewhere: `spec` is the new spec, None when it was removed."""

    name: str
    spec: ProviderSpec | None


ChangeCallback = Callable[[ProviderChange], None]
"""Receives changes made through *other* handles on the same backend (other replicas)."""

Unsubscribe = Callable[[], None]
"""Stops a subscription."""


class StateStore(Protocol):
    """Runtime registrations and their change feed, shared by every replica of a backend."""

    @property
    def shared(self) -> bool:
        """Whether other processes share this store (their changes arrive via subscribe)."""
        ...

    async def load_providers(self) -> tuple[ProviderSpec, ...]:
        """Every persisted registration, sorted by name (secrets included, for connectors)."""
        ...

    async def save_provider(self, spec: ProviderSpec) -> None:
        """Persist a registration, replacing any of the same name; durable on return."""
        ...

    async def delete_provider(self, name: str) -> bool:
        """Remove a registration; whether one existed. Durable on return."""
        ...

    def subscribe(self, callback: ChangeCallback) -> Unsubscribe:
        """Call `callback` for changes made through other handles; never for this one's own."""
        ...

    async def listening(self) -> None:
        """Return once changes made from now on reach the subscribers (or the feed is down)."""
        ...

    async def health(self) -> StoreHealth:
        """Whether the backend is reachable and writable."""
        ...

    async def aclose(self) -> None:
        """Release connections and stop subscriptions."""
        ...
