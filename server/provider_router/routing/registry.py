"""The provider registry: lock-free reads of an immutable snapshot, serialized writes.

Writers (load, Register, Unregister, a change from another replica) take a lock, build a new
frozen RegistrySnapshot and publish it with one attribute assignment; readers call
`snapshot()` and keep using what they got, so a decision never sees half a change. A snapshot
carries indexes (model -> candidates in priority order, provider -> model -> candidate), so
finding the candidates of a model costs the same with 10 or 10,000 providers.

Merge rule at start (`load`) with a store of this process alone (memory://): the config file
is the source of truth for the providers it names. A persisted runtime registration whose name
the config also defines is dropped (and deleted from the store); every other persisted
registration is restored. Register and Unregister apply to any name at once and are persisted,
but a runtime change to a config-defined provider lasts only until the next start.

With a shared store (redis://) the store holds the fleet's runtime registrations and the
config file stays per replica: each replica serves its config overlaid by the shared
registrations, a runtime registration winning by name, at start as at any time (deleting it
because one replica's config names it would undo it on every replica). Unregister removes the
shared registration everywhere; a replica whose config defines that name falls back to its
config spec. A store that cannot be reached at start leaves the registry on its config; the
store's feed reports the registrations once it is back. A write the store refuses is undone
here too, so this replica never serves a registration the others will not see.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from provider_router.domain import MetricsReport, ProviderSpec, RegisterOutcome
from provider_router.errors import (
    ConfigError,
    FieldViolation,
    InvalidRequestError,
    StateUnavailableError,
    UnknownProviderError,
)
from provider_router.routing.candidates import Candidate, base_order_key, make_candidate
from provider_router.routing.settings import RoutingSettings
from provider_router.routing.stats import StatsBook
from provider_router.state.base import ProviderChange, StateStore, Unsubscribe
from provider_router.validation import validate_provider_spec

log = logging.getLogger(__name__)

Listener = Callable[[ProviderSpec | None, ProviderSpec | None], None]
"""Called (old, new) after a provider is added (old None), replaced, or removed (new None)."""


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """An immutable view of every provider, with the indexes routing needs. Never mutate."""

    version: int
    providers: Mapping[str, ProviderSpec]
    by_model: Mapping[str, tuple[Candidate, ...]]
    by_provider: Mapping[str, Mapping[str, Candidate]]

    @classmethod
    def build(cls, specs: Iterable[ProviderSpec], version: int) -> RegistrySnapshot:
        """A snapshot of `specs` (names unique)."""
        providers = {spec.name: spec for spec in specs}
        by_provider = {name: _own(spec) for name, spec in providers.items()}
        grouped: dict[str, list[Candidate]] = {}
        for own in by_provider.values():
            for model, candidate in own.items():
                grouped.setdefault(model, []).append(candidate)
        by_model = {m: tuple(sorted(cs, key=base_order_key)) for m, cs in grouped.items()}
        return cls(version, providers, by_model, by_provider)

    def serving(self, model: str) -> tuple[Candidate, ...]:
        """The candidates that list `model`, higher priority first."""
        return self.by_model.get(model, ())

    def candidate(self, provider: str, model: str) -> Candidate | None:
        """`model` at `provider` (built on the fly for an unlisted model); None if no provider."""
        own = self.by_provider.get(provider)
        if own is None:
            return None
        found = own.get(model)
        return found if found is not None else make_candidate(self.providers[provider], model)

    def with_provider(self, spec: ProviderSpec) -> RegistrySnapshot:
        """A new snapshot with `spec` added or replacing its namesake."""
        providers = {**self.providers, spec.name: spec}
        own = _own(spec)
        by_provider = {**self.by_provider, spec.name: own}
        return RegistrySnapshot(self.version + 1, providers,
                                self._reindex(spec.name, own), by_provider)

    def without_provider(self, name: str) -> RegistrySnapshot:
        """A new snapshot without the provider `name` (which must exist)."""
        providers = {k: v for k, v in self.providers.items() if k != name}
        by_provider = {k: v for k, v in self.by_provider.items() if k != name}
        return RegistrySnapshot(self.version + 1, providers, self._reindex(name, {}), by_provider)

    def _reindex(self, name: str, own: Mapping[str, Candidate]) -> dict[str, tuple[Candidate, ...]]:
        # Only the models the old or new spec serves change; the rest are shared as is.
        old = self.by_provider.get(name, {})
        by_model = dict(self.by_model)
        for model in old.keys() | own.keys():
            kept = [c for c in by_model.get(model, ()) if c.spec.name != name]
            if model in own:
                kept.append(own[model])
            if kept:
                by_model[model] = tuple(sorted(kept, key=base_order_key))
            else:
                del by_model[model]
        return by_model


def _own(spec: ProviderSpec) -> dict[str, Candidate]:
    return {m.name: make_candidate(spec, m.name) for m in spec.models}


class Registry:
    """Every provider, from config and runtime registration, with their live statistics."""

    def __init__(self, store: StateStore, settings: RoutingSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.clock = clock
        """The wall clock (epoch seconds) that metrics expiry and stats reads use."""
        # Re-entrant so a listener may itself change the registry without deadlocking.
        self._lock = threading.RLock()
        self._snapshot = RegistrySnapshot.build((), 0)
        self._listeners: list[Listener] = []
        self._unsubscribe: Unsubscribe | None = None
        self._config: Mapping[str, ProviderSpec] = {}
        self.stats = StatsBook(settings.latency_alpha, settings.latency_window,
                               settings.metrics_ttl_s)

    def snapshot(self) -> RegistrySnapshot:
        """The current snapshot; lock-free, and consistent for as long as it is held."""
        return self._snapshot

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(old, new)` after every change, in order, under the writer lock.

        Keep listeners quick and free of blocking I/O; one that raises is logged and does not
        stop the change or the other listeners.
        """
        with self._lock:
            self._listeners.append(callback)

    async def load(self, config_specs: Sequence[ProviderSpec]) -> None:
        """Merge persisted registrations with the config; also a reload (see module doc)."""
        config_names = _check_config(config_specs)
        self._config = {spec.name: spec for spec in config_specs}
        if self._unsubscribe is None and self._store.shared:
            # Follow the feed before reading, so no change falls between the two.
            self._unsubscribe = self._store.subscribe(self._on_remote_change)
            await self._store.listening()
        persisted = await self._persisted()
        for spec in persisted:
            _check_persisted(spec)
        if self._store.shared:
            self._overlay(config_specs, persisted)
        else:
            await self._config_wins(config_specs, config_names, persisted)
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._on_remote_change)

    async def _persisted(self) -> tuple[ProviderSpec, ...]:
        try:
            return await self._store.load_providers()
        except StateUnavailableError as error:
            log.warning("starting on the config alone: %s", error)
            return ()

    def _overlay(self, config_specs: Sequence[ProviderSpec],
                       persisted: Sequence[ProviderSpec]) -> None:
        runtime = {spec.name: spec for spec in persisted}
        with self._lock:
            self._publish_all([*(s for s in config_specs if s.name not in runtime), *persisted])

    async def _config_wins(self, config_specs: Sequence[ProviderSpec],
                           config_names: frozenset[str],
                           persisted: Sequence[ProviderSpec]) -> None:
        shadowed = [p.name for p in persisted if p.name in config_names]
        restored = [p for p in persisted if p.name not in config_names]
        with self._lock:
            self._publish_all([*config_specs, *restored])
        for name in shadowed:
            log.info("provider %s: the config defines it, so its runtime registration is "
                     "dropped", name)
            await self._store.delete_provider(name)

    def check(self, spec: ProviderSpec) -> RegisterOutcome:
        """What register() would do (validate_only): InvalidRequestError, or the outcome."""
        violations = validate_provider_spec(spec)
        if violations:
            raise InvalidRequestError(_summary(spec.name, violations), violations)
        current = self._snapshot.providers.get(spec.name)
        return RegisterOutcome(spec, created=current is None, changed=current != spec)

    async def register(self, spec: ProviderSpec) -> RegisterOutcome:
        """Add or atomically replace a provider; idempotent for an identical spec."""
        self.check(spec)
        old = self._snapshot.providers.get(spec.name)
        outcome = self._apply(spec)
        if outcome.changed:
            await self._persist_or_undo(spec.name, spec, old)
        return outcome

    async def unregister(self, name: str) -> ProviderSpec:
        """Remove a provider; calls already in flight finish. UnknownProviderError if absent."""
        old = self._remove(name)
        if old is None:
            raise UnknownProviderError(name)
        await self._persist_or_undo(name, None, old)
        fallback = self._config.get(name) if self._store.shared else None
        if fallback is not None and name not in self._snapshot.providers:
            self._apply(fallback)  # this replica's own config spec serves again
        return old

    async def _persist_or_undo(self, name: str, new: ProviderSpec | None,
                               old: ProviderSpec | None) -> None:
        try:
            await self._persist(name)
        except StateUnavailableError:
            # Undo only our own change: a later writer's spec stays.
            if self._snapshot.providers.get(name) == new:
                if old is None:
                    self._remove(name)
                else:
                    self._apply(old)
            raise

    def update_metrics(self, report: MetricsReport) -> None:
        """Record externally measured metrics (validated; they blend with observations)."""
        if report.provider not in self._snapshot.providers:
            raise UnknownProviderError(report.provider)
        violations = _metrics_violations(report)
        if violations:
            raise InvalidRequestError(_summary(report.provider, violations), violations)
        self.stats.report(report, self.clock())

    async def aclose(self) -> None:
        """Stop following the store's change feed."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- writers (under the lock; no awaits inside) -----------------------------------------

    def _apply(self, spec: ProviderSpec) -> RegisterOutcome:
        with self._lock:
            old = self._snapshot.providers.get(spec.name)
            if old == spec:
                return RegisterOutcome(spec, created=False, changed=False)
            self._snapshot = self._snapshot.with_provider(spec)
            self._notify(old, spec)
            return RegisterOutcome(spec, created=old is None, changed=True)

    def _remove(self, name: str) -> ProviderSpec | None:
        with self._lock:
            old = self._snapshot.providers.get(name)
            if old is not None:
                self._snapshot = self._snapshot.without_provider(name)
                self.stats.forget(name)
                self._notify(old, None)
            return old

    def _publish_all(self, specs: Sequence[ProviderSpec]) -> None:
        before = self._snapshot.providers
        self._snapshot = RegistrySnapshot.build(specs, self._snapshot.version + 1)
        after = self._snapshot.providers
        for name in sorted(before.keys() | after.keys()):
            old, new = before.get(name), after.get(name)
            if old != new:
                if new is None:
                    self.stats.forget(name)
                self._notify(old, new)

    def _notify(self, old: ProviderSpec | None, new: ProviderSpec | None) -> None:
        # A failing listener must not undo a published change nor starve the others.
        name = new.name if new is not None else old.name if old is not None else ""
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("registry listener %r failed on provider %s", listener, name)

    async def _persist(self, name: str) -> None:
        # Writers may race (tasks and threads); whoever finishes last re-checks the current
        # spec after its write, so the store always ends up holding the latest one.
        while True:
            current = self._snapshot.providers.get(name)
            if current is None:
                await self._store.delete_provider(name)
            else:
                await self._store.save_provider(current)
            if self._snapshot.providers.get(name) is current:
                return

    def _on_remote_change(self, change: ProviderChange) -> None:
        if change.spec is None:
            fallback = self._config.get(change.name) if self._store.shared else None
            if fallback is None:
                self._remove(change.name)
            else:
                self._apply(fallback)
            return
        violations = validate_provider_spec(change.spec)
        if violations:
            log.error("ignoring an invalid registration from the state store: %s",
                      _summary(change.name, violations))
            return
        self._apply(change.spec)


def _summary(name: str, violations: Sequence[FieldViolation]) -> str:
    shown = "; ".join(f"{v.field} {v.description}" for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"invalid provider {name!r}: {shown}{more}"


def _check_config(specs: Sequence[ProviderSpec]) -> frozenset[str]:
    names: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name in names:
            raise ConfigError(f"providers[{index}].name", spec.name, "a unique provider name")
        names.add(spec.name)
        for violation in validate_provider_spec(spec):
            field = violation.field.removeprefix("provider")
            raise ConfigError(f"providers[{index}]{field}", spec.name, violation.description)
    return frozenset(names)


def _check_persisted(spec: ProviderSpec) -> None:
    violations = validate_provider_spec(spec)
    if violations:
        raise ConfigError("state.registry_file", spec.name,
                          f"valid persisted registrations ({_summary(spec.name, violations)})")


def _metrics_violations(report: MetricsReport) -> tuple[FieldViolation, ...]:
    found: list[FieldViolation] = []
    for field, value, high, bound in (
            ("avg_latency_ms", report.avg_latency_ms, math.inf, "a finite number >= 0"),
            ("error_rate", report.error_rate, 1.0, "between 0 and 1"),
            ("load", report.load, 1.0, "between 0 and 1")):
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= high):
            found.append(FieldViolation(field, f"must be {bound}"))
    if report.ttl_s is not None and not (math.isfinite(report.ttl_s) and report.ttl_s > 0):
        found.append(FieldViolation("ttl", "must be a positive duration"))
    return tuple(found)
