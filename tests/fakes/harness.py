"""Builders shared by the connector tests: specs pointing at fakes, requests, settings."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from provider_router.connectors.factory import ConnectorSettings
from provider_router.connectors.streaming import StreamDecoder
from provider_router.domain import (
    ChatMessage,
    ChatRequest,
    CommandOptions,
    MockOptions,
    ProviderKind,
    ProviderRequest,
    ProviderSpec,
    ProviderTimeouts,
    Role,
    StreamEvent,
)
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.base import FakeUpstream
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake

KEY = "sk-test-SECRET-7f3a9c0d1e2b4a5968"
"""A distinctive fake API key, so a leak into logs or errors is easy to spot."""

KEY_ENV = "FAKE_PROVIDER_KEY"
"""The env var the test specs read their key from."""

AGENT = str(Path(__file__).with_name("agent.py"))
"""The fake command-line agent script."""

FAKES: Mapping[ProviderKind, type[FakeUpstream]] = {
    ProviderKind.OPENAI: OpenAIFake,
    ProviderKind.OPENAI_COMPATIBLE: OpenAIFake,
    ProviderKind.ANTHROPIC: AnthropicFake,
    ProviderKind.GEMINI: GeminiFake,
    ProviderKind.OLLAMA: OllamaFake,
}
"""The fake upstream class per HTTP provider kind."""

MODELS: Mapping[ProviderKind, str] = {
    ProviderKind.OPENAI: "gpt-fake",
    ProviderKind.OPENAI_COMPATIBLE: "vllm-fake",
    ProviderKind.ANTHROPIC: "claude-fake",
    ProviderKind.GEMINI: "gemini-fake",
    ProviderKind.OLLAMA: "llama-fake",
    ProviderKind.COMMAND: "agent-fake",
    ProviderKind.MOCK: "mock-fake",
}
"""A model name per kind."""


def settings(connect: float = 2.0, first_token: float = 5.0, idle: float = 5.0,
             total: float = 20.0, env: Mapping[str, str] | None = None) -> ConnectorSettings:
    """Connector settings with short test timeouts and the fake key in the env."""
    return ConnectorSettings(
        default_timeouts=ProviderTimeouts(connect, first_token, idle, total),
        env=dict(env) if env is not None else {KEY_ENV: KEY})


def http_spec(kind: ProviderKind, fake: FakeUpstream | None, base_url: str = "",
              **overrides: object) -> ProviderSpec:
    """A spec for an HTTP provider pointing at a fake."""
    fields: dict[str, object] = {
        "name": f"fake-{kind.value}", "kind": kind,
        "base_url": base_url or (fake.base_url if fake else ""), "api_key_env": KEY_ENV}
    fields.update(overrides)
    return ProviderSpec(**fields)  # type: ignore[arg-type]


def command_spec(mode: str, **overrides: object) -> ProviderSpec:
    """A spec for the fake agent in one of its modes."""
    argv = (sys.executable, AGENT, mode, "{prompt_file}", "{output_file}", "{model}")
    fields: dict[str, object] = {"name": "fake-command", "kind": ProviderKind.COMMAND,
                                 "command": CommandOptions(argv=argv)}
    fields.update(overrides)
    return ProviderSpec(**fields)  # type: ignore[arg-type]


def mock_spec(**options: object) -> ProviderSpec:
    """A mock provider spec."""
    return ProviderSpec(name="fake-mock", kind=ProviderKind.MOCK,
                        mock=MockOptions(**options))  # type: ignore[arg-type]


def request(text: str = "Say hello", model: str = "gpt-fake", **chat: object) -> ProviderRequest:
    """A one-message request (or the given messages) for a model."""
    messages = chat.pop("messages", (ChatMessage(Role.USER, text),))
    return ProviderRequest(ChatRequest(messages=messages, **chat), model)  # type: ignore[arg-type]


FIXTURES = Path(__file__).parent.parent / "fixtures" / "connectors"
"""Recorded-shape provider bodies."""


def fixture(name: str) -> bytes:
    """A recorded-shape body."""
    return (FIXTURES / name).read_bytes()


def drain(decoder: StreamDecoder, data: bytes, step: int = 0) -> list[StreamEvent | None]:
    """All events a decoder makes of a body (fed in `step`-byte pieces), then finish()."""
    pieces = [data[i:i + step] for i in range(0, len(data), step)] if step else [data]
    events: list[StreamEvent | None] = []
    for piece in pieces:
        events += decoder.feed(piece)
    events += decoder.close()
    events.append(decoder.finish())
    return events
