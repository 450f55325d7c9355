"""Providers registered from the environment, so `serve` is useful with no config file.

A provider is added for each of OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY (or
GOOGLE_API_KEY), OPENROUTER_API_KEY and OLLAMA_HOST that is set, unless the config file already
defines a provider of that name. With none of them and no providers configured, the built-in
mock provider is registered so a newcomer can try Route, Chat and StreamChat at once.
Prices are USD per million tokens as published by each provider; adjust them in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from provider_router.domain import (
    Capability,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
)

_CHAT = frozenset({Capability.CHAT, Capability.STREAMING})
_RICH = _CHAT | {Capability.VISION, Capability.TOOLS, Capability.JSON}


@dataclass(frozen=True, slots=True)
class EnvProvider:
    """A provider that the presence of an environment variable turns on."""

    env: tuple[str, ...]
    spec: ProviderSpec


def _m(name: str, inp: float, out: float, window: int) -> ModelSpec:
    return ModelSpec(name=name, input_per_mtok=inp, output_per_mtok=out, context_window=window)


CATALOG: tuple[EnvProvider, ...] = (
    EnvProvider(("OPENAI_API_KEY",), ProviderSpec(
        name="openai", kind=ProviderKind.OPENAI, api_key_env="OPENAI_API_KEY",
        models=(_m("gpt-4o-mini", 0.15, 0.60, 128_000), _m("gpt-4o", 2.50, 10.0, 128_000),
                _m("gpt-4.1", 2.0, 8.0, 1_047_576), _m("gpt-4.1-mini", 0.40, 1.60, 1_047_576)),
        capabilities=_RICH, priority=10)),
    EnvProvider(("ANTHROPIC_API_KEY",), ProviderSpec(
        name="anthropic", kind=ProviderKind.ANTHROPIC, api_key_env="ANTHROPIC_API_KEY",
        models=(_m("claude-sonnet-4-5", 3.0, 15.0, 200_000),
                _m("claude-haiku-4-5", 1.0, 5.0, 200_000),
                _m("claude-opus-4-1", 15.0, 75.0, 200_000)),
        capabilities=_CHAT | {Capability.VISION, Capability.TOOLS}, priority=10)),
    EnvProvider(("GEMINI_API_KEY", "GOOGLE_API_KEY"), ProviderSpec(
        name="gemini", kind=ProviderKind.GEMINI, api_key_env="GEMINI_API_KEY",
        models=(_m("gemini-2.5-flash", 0.30, 2.50, 1_048_576),
                _m("gemini-2.5-pro", 1.25, 10.0, 1_048_576)),
        capabilities=_RICH, priority=10)),
    EnvProvider(("OPENROUTER_API_KEY",), ProviderSpec(
        name="openrouter", kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url="https://openrouter.ai/api/v1", api_key_env="OPENROUTER_API_KEY",
        models=(ModelSpec(name="openrouter/auto"),), capabilities=_CHAT, priority=5)),
    EnvProvider(("OLLAMA_HOST",), ProviderSpec(
        name="ollama", kind=ProviderKind.OLLAMA, models=(ModelSpec(name="llama3.2"),),
        capabilities=_CHAT, priority=1)),
)

MOCK = ProviderSpec(
    name="mock", kind=ProviderKind.MOCK,
    models=(ModelSpec(name="mock-1", input_per_mtok=0.0, output_per_mtok=0.0,
                      context_window=32_768),),
    capabilities=_RICH, labels=("demo",), mock=MockOptions(latency=0.02, chunk_count=6),
)


def _ollama_url(host: str) -> str:
    # OLLAMA_HOST is often given as host:port without a scheme (Ollama's own convention).
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def _with_env_key(entry: EnvProvider, env: Mapping[str, str]) -> ProviderSpec | None:
    present = next((name for name in entry.env if env.get(name)), None)
    if present is None:
        return None
    spec = entry.spec
    if spec.kind is ProviderKind.OLLAMA:
        return replace(spec, base_url=_ollama_url(env[present]))
    return replace(spec, api_key_env=present)


def providers_from_env(env: Mapping[str, str], configured: tuple[ProviderSpec, ...]
                       ) -> tuple[ProviderSpec, ...]:
    """Providers to add: env-detected ones not in the config, or the mock when there are none."""
    names = {spec.name for spec in configured}
    found = tuple(
        spec for entry in CATALOG
        if entry.spec.name not in names and (spec := _with_env_key(entry, env)) is not None
    )
    if found or configured:
        return found
    return (MOCK,)
