"""Model resolution: which provider+model deployments a requested model name means.

In this order: `provider/model` naming a registered provider (explicit; the model need not be
listed); a configured alias or model group; a bare model that providers list; a prefix rule
for a model nobody lists (`gpt-` -> openai, ...; only when that provider is registered); the
configured default. A model with a slash whose first part is not a provider is looked up
whole, so `meta-llama/llama-3.1-8b` works as a bare model name; when nothing serves it either,
it is an unknown provider, never the default: `provider/model` asks for one provider.

A resolution depends only on the registry snapshot, the routing settings and the name, so
`ResolutionCache` keeps each name's resolution for as long as the snapshot it came from is
current: a decision then spends one dict lookup on it instead of the steps above.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from provider_router.domain import RouteTarget
from provider_router.errors import UnavailableError, UnknownModelError, UnknownProviderError
from provider_router.routing.candidates import Candidate
from provider_router.routing.registry import RegistrySnapshot
from provider_router.routing.settings import RoutingSettings


class Source(enum.StrEnum):
    """Which resolution step matched."""

    EXPLICIT = "explicit"
    ALIAS = "alias"
    MODEL = "model"
    PREFIX = "prefix"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The deployments a name resolved to, in base order, and how it got there."""

    source: Source
    name: str
    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """The round-robin group: one counter per alias or model, whatever its deployments."""
        return f"{self.source.value}:{self.name}"


# Callers choose model names, and every unknown one resolves to the default: past this many
# names a snapshot's cache stops growing and later names are resolved on each call.
_CACHED_NAMES = 1024


class ResolutionCache:
    """`resolve_model` answers for the current snapshot; thread-safe and lock-free.

    Sound because a resolution reads nothing but the snapshot (immutable), the settings (fixed
    for the cache's life) and the name: no clock, stats, breaker or limiter state. A new
    snapshot starts a new table, found by identity, so no registry change is ever missed.
    Errors are not cached: they are rare and raise as before.
    """

    __slots__ = ("_settings", "_table")

    def __init__(self, settings: RoutingSettings) -> None:
        self._settings = settings
        # One tuple, replaced whole, so a reader never pairs a table with another snapshot.
        self._table: tuple[RegistrySnapshot | None, dict[str, Resolution]] = (None, {})

    def resolve(self, snapshot: RegistrySnapshot, name: str) -> Resolution:
        """`resolve_model(snapshot, settings, name)`, computed once per snapshot and name."""
        current, table = self._table
        if current is not snapshot:
            table = {}
            self._table = (snapshot, table)
        found = table.get(name)
        if found is None:
            found = resolve_model(snapshot, self._settings, name)
            if len(table) < _CACHED_NAMES:
                table[name] = found
        return found


def lookup(snapshot: RegistrySnapshot, settings: RoutingSettings, name: str) -> Resolution | None:
    """Resolve `name` without falling back to the default; None when nothing matches."""
    provider, slash, model = name.partition("/")
    if slash and model and provider in snapshot.providers:
        found = snapshot.candidate(provider, model)
        assert found is not None  # the provider exists in this snapshot
        return Resolution(Source.EXPLICIT, name, (found,))
    targets = settings.aliases.get(name)
    if targets is not None:
        return _alias(snapshot, name, targets)
    serving = snapshot.serving(name)
    if serving:
        return Resolution(Source.MODEL, name, serving)
    for prefix, owner in settings.prefix_rules:
        if name.startswith(prefix) and owner in snapshot.providers:
            found = snapshot.candidate(owner, name)
            assert found is not None
            note = f"no provider lists {name!r}; prefix {prefix!r} routes it to {owner}"
            return Resolution(Source.PREFIX, name, (found,), (note,))
    return None


def resolve_model(snapshot: RegistrySnapshot, settings: RoutingSettings,
                  name: str) -> Resolution:
    """Resolve a requested model, falling back to the configured default.

    Raises UnknownProviderError for an unmatched `provider/model`, UnknownModelError when
    nothing matches and no default is configured, and UnavailableError when the default
    itself names nothing registered.
    """
    if name:
        found = lookup(snapshot, settings, name)
        if found is not None:
            return found
        provider, slash, _ = name.partition("/")
        if slash:
            # `provider/model` pins a provider: another provider's default would betray that.
            raise UnknownProviderError(provider)
    if not (settings.default_provider or settings.default_model):
        raise UnknownModelError(name)
    default = _default(snapshot, settings)
    shown = _default_name(settings)
    if default is None or not default.candidates:
        raise UnavailableError(f"model {name!r} is not served here and the default {shown} "
                               "is not registered")
    note = f"no provider serves {name!r}; using the default {shown}" if name else \
        f"no model requested; using the default {shown}"
    return Resolution(Source.DEFAULT, shown, default.candidates, (*default.notes, note))


def _default_name(settings: RoutingSettings) -> str:
    if settings.default_provider and settings.default_model:
        return f"{settings.default_provider}/{settings.default_model}"
    return settings.default_model or settings.default_provider


def _default(snapshot: RegistrySnapshot, settings: RoutingSettings) -> Resolution | None:
    provider, model = settings.default_provider, settings.default_model
    if not provider:
        return lookup(snapshot, settings, model)
    spec = snapshot.providers.get(provider)
    if spec is None:
        # The default provider is gone; anyone serving the default model will do.
        return lookup(snapshot, settings, model) if model else None
    chosen = snapshot.candidate(provider, model or spec.models[0].name)
    return Resolution(Source.DEFAULT, provider, (chosen,) if chosen else ())


def _alias(snapshot: RegistrySnapshot, name: str,
           targets: tuple[RouteTarget, ...]) -> Resolution:
    candidates: list[Candidate] = []
    missing: list[str] = []
    for target in targets:
        found = snapshot.candidate(target.provider, target.model)
        if found is None:
            missing.append(target.provider)
        else:
            candidates.append(found)
    notes = (f"alias {name!r}: {', '.join(missing)} not registered",) if missing else ()
    return Resolution(Source.ALIAS, name, tuple(candidates), notes)
