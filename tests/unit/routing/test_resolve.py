"""Model resolution, in the documented order."""

from __future__ import annotations

import pytest

from provider_router.domain import RouteTarget
from provider_router.errors import UnavailableError, UnknownModelError, UnknownProviderError
from provider_router.routing import resolve
from provider_router.routing.registry import RegistrySnapshot
from provider_router.routing.resolve import ResolutionCache, Source, lookup, resolve_model
from provider_router.routing.settings import DEFAULT_PREFIXES, RoutingSettings

from .factories import provider

SNAPSHOT = RegistrySnapshot.build([
    provider("openai", "gpt-4o", "shared", priority=1),
    provider("anthropic", "claude-sonnet-4-5", "claude-haiku-4"),
    provider("groq", "llama-3.1-8b", "shared", priority=5),
    provider("together", "llama-3.1-8b", "meta-llama/llama-3.1-70b"),
], version=1)
ALIASES = {"fast": (RouteTarget("groq", "llama-3.1-8b"), RouteTarget("together", "llama-3.1-8b")),
           "gone": (RouteTarget("nobody", "x"),),
           "shared": (RouteTarget("openai", "shared"),)}
SETTINGS = RoutingSettings(aliases=ALIASES)


def targets(name: str, settings: RoutingSettings = SETTINGS) -> tuple[Source, list[str]]:
    found = resolve_model(SNAPSHOT, settings, name)
    return found.source, [f"{c.target.provider}/{c.target.model}" for c in found.candidates]


@pytest.mark.parametrize(("name", "source", "expected"), [
    # provider/model naming a registered provider, listed or not
    ("openai/gpt-4o", Source.EXPLICIT, ["openai/gpt-4o"]),
    ("openai/gpt-5-preview", Source.EXPLICIT, ["openai/gpt-5-preview"]),
    # an alias (model group) beats a bare model of the same name
    ("fast", Source.ALIAS, ["groq/llama-3.1-8b", "together/llama-3.1-8b"]),
    ("shared", Source.ALIAS, ["openai/shared"]),
    # a bare model served by several providers, higher priority first
    ("llama-3.1-8b", Source.MODEL, ["groq/llama-3.1-8b", "together/llama-3.1-8b"]),
    # a slash whose first part is no provider: the whole name is a model
    ("meta-llama/llama-3.1-70b", Source.MODEL, ["together/meta-llama/llama-3.1-70b"]),
    # prefix rules for models nobody lists
    ("gpt-4o-mini", Source.PREFIX, ["openai/gpt-4o-mini"]),
    ("o3-mini", Source.PREFIX, ["openai/o3-mini"]),
    ("claude-opus-4", Source.PREFIX, ["anthropic/claude-opus-4"]),
])
def test_resolution_order(name: str, source: Source, expected: list[str]) -> None:
    assert targets(name) == (source, expected)


def test_a_prefix_whose_provider_is_not_registered_does_not_match() -> None:
    assert lookup(SNAPSHOT, SETTINGS, "gemini-2.0-flash") is None
    assert dict(DEFAULT_PREFIXES)["gemini-"] == "gemini"


def test_unknown_model_without_default_names_the_model() -> None:
    with pytest.raises(UnknownModelError) as caught:
        resolve_model(SNAPSHOT, SETTINGS, "mystery-model")
    assert caught.value.model == "mystery-model"
    assert "mystery-model" in caught.value.message


def test_an_unmatched_provider_slash_model_is_an_unknown_provider_even_with_a_default() -> None:
    settings = RoutingSettings(default_provider="openai", default_model="gpt-4o")
    with pytest.raises(UnknownProviderError) as caught:
        resolve_model(SNAPSHOT, settings, "nobody/none")
    assert caught.value.provider == "nobody"


def test_no_model_and_no_default_is_unknown() -> None:
    with pytest.raises(UnknownModelError):
        resolve_model(SNAPSHOT, SETTINGS, "")


@pytest.mark.parametrize(("default_provider", "default_model", "expected"), [
    ("anthropic", "claude-haiku-4", ["anthropic/claude-haiku-4"]),
    ("", "llama-3.1-8b", ["groq/llama-3.1-8b", "together/llama-3.1-8b"]),
    ("", "fast", ["groq/llama-3.1-8b", "together/llama-3.1-8b"]),
    ("anthropic", "", ["anthropic/claude-sonnet-4-5"]),
    # the default provider is gone: whoever serves the default model
    ("retired", "llama-3.1-8b", ["groq/llama-3.1-8b", "together/llama-3.1-8b"]),
])
def test_the_default_catches_unknown_and_missing_models(default_provider: str,
                                                         default_model: str,
                                                         expected: list[str]) -> None:
    settings = RoutingSettings(default_provider=default_provider, default_model=default_model,
                               aliases=ALIASES)
    for name in ("mystery-model", ""):
        found = resolve_model(SNAPSHOT, settings, name)
        assert found.source is Source.DEFAULT
        assert [f"{c.target.provider}/{c.target.model}" for c in found.candidates] == expected
        assert any("default" in note for note in found.notes)


def test_a_default_that_names_nothing_registered_is_unavailable() -> None:
    settings = RoutingSettings(default_provider="retired", default_model="old-model")
    with pytest.raises(UnavailableError, match="old-model"):
        resolve_model(SNAPSHOT, settings, "mystery-model")


def test_an_alias_with_unregistered_deployments_says_so() -> None:
    found = resolve_model(SNAPSHOT, SETTINGS, "gone")
    assert found.candidates == ()
    assert found.notes == ("alias 'gone': nobody not registered",)


def test_groups_are_per_alias_or_model() -> None:
    assert resolve_model(SNAPSHOT, SETTINGS, "fast").group == "alias:fast"
    assert resolve_model(SNAPSHOT, SETTINGS, "llama-3.1-8b").group == "model:llama-3.1-8b"


# --- the per-snapshot cache -------------------------------------------------------------------


def test_the_cache_answers_as_resolve_model_and_once_per_snapshot() -> None:
    cache = ResolutionCache(SETTINGS)
    for name in ("fast", "llama-3.1-8b", "openai/gpt-5-preview", "gpt-4.1", "gone"):
        first = cache.resolve(SNAPSHOT, name)
        assert first == resolve_model(SNAPSHOT, SETTINGS, name)
        assert cache.resolve(SNAPSHOT, name) is first


def test_every_new_snapshot_is_resolved_afresh() -> None:
    cache = ResolutionCache(SETTINGS)
    before = cache.resolve(SNAPSHOT, "llama-3.1-8b")
    added = SNAPSHOT.with_provider(provider("fireworks", "llama-3.1-8b", priority=9))
    assert [c.spec.name for c in cache.resolve(added, "llama-3.1-8b").candidates] == [
        "fireworks", "groq", "together"]
    removed = added.without_provider("groq")
    assert [c.spec.name for c in cache.resolve(removed, "llama-3.1-8b").candidates] == [
        "fireworks", "together"]
    # A reader still holding an older snapshot gets that snapshot's answer.
    assert cache.resolve(SNAPSHOT, "llama-3.1-8b") == before


def test_errors_are_not_cached_and_names_past_the_limit_still_resolve(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResolutionCache(RoutingSettings(default_model="gpt-4o"))
    for _ in range(2):
        with pytest.raises(UnknownProviderError):
            cache.resolve(SNAPSHOT, "nobody/x")
    monkeypatch.setattr(resolve, "_CACHED_NAMES", 2)
    for i in range(5):
        found = cache.resolve(SNAPSHOT, f"unknown-{i}")
        assert found.source is Source.DEFAULT
        assert [c.target for c in found.candidates] == [RouteTarget("openai", "gpt-4o")]
