"""The factory: dispatch by kind, availability, key resolution, default base URLs."""

from __future__ import annotations

import dataclasses

import pytest

from provider_router.connectors.anthropic import AnthropicConnector
from provider_router.connectors.command import CommandConnector
from provider_router.connectors.factory import (
    DEFAULT_BASE_URLS,
    ConnectorSettings,
    availability,
    create_connector,
    resolve_api_key,
)
from provider_router.connectors.gemini import GeminiConnector
from provider_router.connectors.mock import MockConnector
from provider_router.connectors.ollama import OllamaConnector
from provider_router.connectors.openai import OpenAIConnector
from provider_router.domain import ProviderKind, ProviderSpec, ProviderTimeouts, Secret


@pytest.mark.parametrize(("kind", "cls"), [
    (ProviderKind.OPENAI, OpenAIConnector), (ProviderKind.OPENAI_COMPATIBLE, OpenAIConnector),
    (ProviderKind.ANTHROPIC, AnthropicConnector), (ProviderKind.GEMINI, GeminiConnector),
    (ProviderKind.OLLAMA, OllamaConnector), (ProviderKind.COMMAND, CommandConnector),
    (ProviderKind.MOCK, MockConnector)])
async def test_create_connector_dispatches_by_kind(kind: ProviderKind, cls: type) -> None:
    connector = create_connector(ProviderSpec("p", kind), ConnectorSettings())
    assert type(connector) is cls
    await connector.aclose()


def test_settings_defaults() -> None:
    settings = ConnectorSettings()
    assert settings.default_timeouts == ProviderTimeouts(5.0, 10.0, 30.0, 300.0)
    assert (settings.anthropic_max_tokens, settings.anthropic_version) == (4096, "2023-06-01")
    assert dict(settings.env) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.anthropic_max_tokens = 1  # type: ignore[misc]


def test_default_base_urls() -> None:
    assert DEFAULT_BASE_URLS[ProviderKind.OPENAI] == "https://api.openai.com/v1"
    assert DEFAULT_BASE_URLS[ProviderKind.ANTHROPIC] == "https://api.anthropic.com"
    assert DEFAULT_BASE_URLS[ProviderKind.GEMINI] == (
        "https://generativelanguage.googleapis.com/v1beta")
    assert DEFAULT_BASE_URLS[ProviderKind.OLLAMA] == "http://localhost:11434"


def test_resolve_api_key_prefers_the_registered_secret() -> None:
    spec = ProviderSpec("p", ProviderKind.OPENAI, api_key_env="K")
    assert resolve_api_key(spec, {"K": "from-env"}) == Secret("from-env")
    assert resolve_api_key(spec, {"K": ""}) is None
    given = dataclasses.replace(spec, api_key=Secret("registered"))
    assert resolve_api_key(given, {"K": "from-env"}) == Secret("registered")
    # No env var named: nothing is read implicitly, not even OPENAI_API_KEY.
    assert resolve_api_key(ProviderSpec("p", ProviderKind.OPENAI),
                           {"OPENAI_API_KEY": "x"}) is None


@pytest.mark.parametrize(("spec", "env", "expected"), [
    (ProviderSpec("a", ProviderKind.ANTHROPIC, api_key_env="ANTHROPIC_API_KEY"), {},
     (False, "set ANTHROPIC_API_KEY")),
    (ProviderSpec("a", ProviderKind.ANTHROPIC, api_key_env="ANTHROPIC_API_KEY"),
     {"ANTHROPIC_API_KEY": "k"}, (True, "")),
    (ProviderSpec("g", ProviderKind.GEMINI, api_key=Secret("k")), {}, (True, "")),
    (ProviderSpec("o", ProviderKind.OPENAI), {},
     (False, "no API key: set api_key, or api_key_env (e.g. OPENAI_API_KEY)")),
    (ProviderSpec("c", ProviderKind.OPENAI_COMPATIBLE, base_url="http://vllm"), {}, (True, "")),
    (ProviderSpec("l", ProviderKind.OLLAMA), {}, (True, "")),
    (ProviderSpec("m", ProviderKind.MOCK), {}, (True, "")),
])
def test_availability(spec: ProviderSpec, env: dict[str, str],
                      expected: tuple[bool, str]) -> None:
    assert availability(spec, env) == expected
