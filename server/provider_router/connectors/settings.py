"""How connectors are configured: server-wide settings, default base URLs and API keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from provider_router.connectors.egress import EgressGuard, EgressPolicy
from provider_router.connectors.proxy import ProxySettings
from provider_router.domain import ProviderKind, ProviderSpec, ProviderTimeouts, Secret
from provider_router.errors import ProviderUnavailableError

if TYPE_CHECKING:
    from provider_router.telemetry.tracing import Tracing

DEFAULT_TIMEOUTS = ProviderTimeouts(connect=5.0, first_token=10.0, idle=30.0, total=300.0)
"""Per-phase timeouts used when neither the provider spec nor the config sets one.

first_token is 10 s because the router serves interactive chat: hosted models start
streaming within 1-3 s even when busy, so 10 s is several times their slow tail, while a
person waiting at a chat box takes about 10 s of nothing as broken. A silent provider then
costs 10 s before the fallback starts, not 30. Models that think before their first token
(reasoning models) set `timeouts.first_token` on their provider."""

DEFAULT_BASE_URLS: Mapping[ProviderKind, str] = MappingProxyType({
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com/v1beta",
    ProviderKind.OLLAMA: "http://localhost:11434",
})
"""The base URL of each hosted protocol, used when a spec leaves `base_url` empty."""

KEY_REQUIRED: frozenset[ProviderKind] = frozenset(
    {ProviderKind.OPENAI, ProviderKind.ANTHROPIC, ProviderKind.GEMINI})
"""Kinds that cannot be called without an API key."""

SUGGESTED_KEY_ENVS: Mapping[ProviderKind, str] = MappingProxyType({
    ProviderKind.OPENAI: "OPENAI_API_KEY",
    ProviderKind.ANTHROPIC: "ANTHROPIC_API_KEY",
    ProviderKind.GEMINI: "GEMINI_API_KEY",
})
"""The conventional env var per kind; only named in hints, never read implicitly, so a
runtime-registered provider with a foreign base URL cannot pick up another provider's key."""


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """Server-wide connector settings (the `[connectors]` config section)."""

    default_timeouts: ProviderTimeouts = DEFAULT_TIMEOUTS
    anthropic_max_tokens: int = 4096
    anthropic_version: str = "2023-06-01"
    # The environment holds every API key; it must never show up in a repr or a log line.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The SSRF guard for runtime-registered providers' connections (set by app.py).
    egress: EgressGuard | None = None
    # HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment; None when no proxy is set.
    proxies: ProxySettings | None = None

    # Set by the composition root only while tracing is on (telemetry/tracing.py).
    tracing: Tracing | None = field(default=None, repr=False, compare=False)

    def egress_policy(self, spec: ProviderSpec) -> EgressPolicy | None:
        """The policy every new connection of this provider is checked against, if any."""
        return self.egress.policy_for(spec) if self.egress is not None else None


def resolve_api_key(spec: ProviderSpec, env: Mapping[str, str]) -> Secret | None:
    """The provider's key: the registered secret, else the env var it names, else None."""
    if spec.api_key:
        return spec.api_key
    if spec.api_key_env:
        value = env.get(spec.api_key_env, "")
        if value:
            return Secret(value)
    return None


def require_api_key(spec: ProviderSpec, env: Mapping[str, str]) -> Secret:
    """The provider's key; ProviderUnavailableError, with a hint, when it has none."""
    key = resolve_api_key(spec, env)
    if key is None:
        raise ProviderUnavailableError(spec.name, missing_key_hint(spec))
    return key


def bearer_headers(spec: ProviderSpec, settings: ConnectorSettings) -> dict[str, str]:
    """Extra headers from the spec, then `Authorization: Bearer` with the key: required for
    kinds in KEY_REQUIRED, sent when set for the rest (a server behind a proxy)."""
    headers = dict(spec.headers)
    key = (require_api_key(spec, settings.env) if spec.kind in KEY_REQUIRED
           else resolve_api_key(spec, settings.env))
    if key is not None:
        headers["Authorization"] = f"Bearer {key.reveal()}"
    return headers


def missing_key_hint(spec: ProviderSpec) -> str:
    """A human hint for a provider whose key is missing, naming no secret."""
    if spec.api_key_env:
        return f"set {spec.api_key_env}"
    suggested = SUGGESTED_KEY_ENVS.get(spec.kind, "an env var")
    return f"no API key: set api_key, or api_key_env (e.g. {suggested})"


def base_url(spec: ProviderSpec) -> str:
    """The spec's base URL without a trailing slash, or the kind's default."""
    url = spec.base_url or DEFAULT_BASE_URLS.get(spec.kind, "")
    return url.rstrip("/")
