"""One connector per provider, reused across requests, replaced when its spec changes.

A replaced or removed provider's connector is closed only after the calls still using it
finish, so Register and Unregister never cut an answer in half.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from provider_router.connectors.base import Connector
from provider_router.connectors.factory import ConnectorSettings, create_connector
from provider_router.domain import ProviderSpec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    spec: ProviderSpec
    connector: Connector
    leases: int = 0
    retired: bool = False
    closing: asyncio.Task[None] | None = field(default=None)


class Lease:
    """One use of a connector (a class, not a generator context: it runs on every attempt)."""

    __slots__ = ("_entry", "_pool")

    def __init__(self, pool: ConnectorPool, entry: _Entry) -> None:
        self._pool = pool
        self._entry = entry

    def __enter__(self) -> Connector:
        self._entry.leases += 1
        return self._entry.connector

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._pool._returned(self._entry)


class ConnectorPool:
    """Connectors by provider name; used only from the event loop thread."""

    def __init__(self, settings: ConnectorSettings,
                 factory: Callable[[ProviderSpec, ConnectorSettings], Connector] = create_connector
                 ) -> None:
        self._settings = settings
        self._factory = factory
        self._entries: dict[str, _Entry] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _entry(self, spec: ProviderSpec) -> _Entry:
        entry = self._entries.get(spec.name)
        if entry is not None and (entry.spec is spec or entry.spec == spec):
            return entry
        if entry is not None:
            self._retire(entry)
        entry = _Entry(spec, self._factory(spec, self._settings))
        self._entries[spec.name] = entry
        return entry

    def lease(self, spec: ProviderSpec) -> Lease:
        """A context giving the connector for `spec`, kept open until the caller is done."""
        return Lease(self, self._entry(spec))

    def _returned(self, entry: _Entry) -> None:
        entry.leases -= 1
        if entry.retired and entry.leases == 0:
            self._close(entry)

    def get(self, spec: ProviderSpec) -> Connector:
        """The connector for `spec` without a lease (for probes and tests)."""
        return self._entry(spec).connector

    def retire(self, name: str) -> None:
        """Forget a removed provider; its connector closes once idle."""
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._retire(entry)

    def _retire(self, entry: _Entry) -> None:
        entry.retired = True
        if self._entries.get(entry.spec.name) is entry:
            del self._entries[entry.spec.name]
        if entry.leases == 0:
            self._close(entry)

    def _close(self, entry: _Entry) -> None:
        if entry.closing is not None:
            return
        entry.closing = asyncio.get_running_loop().create_task(self._aclose(entry))
        self._closing.add(entry.closing)
        entry.closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _aclose(entry: _Entry) -> None:
        try:
            await entry.connector.aclose()
        except Exception:
            log.exception("closing the connector of %s failed", entry.spec.name)

    async def aclose(self) -> None:
        """Close every connector (at shutdown)."""
        entries, self._entries = list(self._entries.values()), {}
        await asyncio.gather(*(self._aclose(e) for e in entries))
        if self._closing:
            await asyncio.gather(*self._closing)
