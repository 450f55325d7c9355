"""Builds the connector for a provider spec, and says whether it can run on this host."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from provider_router.connectors import command
from provider_router.connectors.anthropic import AnthropicConnector
from provider_router.connectors.base import Connector
from provider_router.connectors.command import CommandConnector
from provider_router.connectors.gemini import GeminiConnector
from provider_router.connectors.mock import MockConnector
from provider_router.connectors.ollama import OllamaConnector
from provider_router.connectors.openai import OpenAIConnector
from provider_router.connectors.settings import (
    DEFAULT_BASE_URLS,
    KEY_REQUIRED,
    ConnectorSettings,
    missing_key_hint,
    resolve_api_key,
)
from provider_router.domain import ProviderKind, ProviderSpec

__all__ = [
    "DEFAULT_BASE_URLS",
    "ConnectorSettings",
    "availability",
    "create_connector",
    "resolve_api_key",
]

_CONSTRUCTORS: Mapping[ProviderKind, Callable[[ProviderSpec, ConnectorSettings], Connector]] = (
    MappingProxyType({
        ProviderKind.OPENAI: OpenAIConnector,
        ProviderKind.OPENAI_COMPATIBLE: OpenAIConnector,
        ProviderKind.ANTHROPIC: AnthropicConnector,
        ProviderKind.GEMINI: GeminiConnector,
        ProviderKind.OLLAMA: OllamaConnector,
        ProviderKind.COMMAND: CommandConnector,
        ProviderKind.MOCK: MockConnector,
    }))


def create_connector(spec: ProviderSpec, settings: ConnectorSettings) -> Connector:
    """The connector for a spec; cheap, opens nothing until the first call."""
    return _CONSTRUCTORS[spec.kind](spec, settings)


def availability(spec: ProviderSpec, env: Mapping[str, str]) -> tuple[bool, str]:
    """(True, "") if the provider can be called from this host, else (False, a hint)."""
    if spec.kind is ProviderKind.COMMAND:
        return command.availability(spec, env)
    # A key is required by the big providers, and by any spec that names a key variable:
    # calling an OpenAI-compatible server without the key it was given would only earn 401s.
    needs_key = spec.kind in KEY_REQUIRED or bool(spec.api_key_env)
    if needs_key and resolve_api_key(spec, env) is None:
        return False, missing_key_hint(spec)
    return True, ""
