"""Fixtures that run the real grpc.aio server in-process on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2_grpc

from provider_router.app import App, create_app
from provider_router.config import load_config
from provider_router.v1 import router_pb2_grpc
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.base import FakeUpstream
from tests.fakes.harness import KEY
from tests.fakes.openai_fake import OpenAIFake


@dataclass
class RunningRouter:
    """A started in-process server and a channel to it."""

    app: App
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceStub
    health: health_pb2_grpc.HealthStub

    @property
    def target(self) -> str:
        """host:port of the server."""
        return f"127.0.0.1:{self.app.port}"


StartRouter = Callable[..., Awaitable[RunningRouter]]


@pytest.fixture
async def start_router(tmp_path: Path) -> AsyncIterator[StartRouter]:
    """start_router(config_toml="", env=None, start=True) → RunningRouter.

    The registry file lives in tmp_path; `env` replaces os.environ for the server (so tests
    never pick up the developer's real API keys).
    """
    running: list[RunningRouter] = []

    async def start(config_toml: str = "", env: Mapping[str, str] | None = None,
                    start: bool = True) -> RunningRouter:
        full_env = {"PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp_path / "registry.json"),
                    **(env or {})}
        path = None
        if config_toml:
            path = tmp_path / f"config-{len(running)}.toml"
            path.write_text(config_toml)
        config = load_config(path, full_env)
        app = await create_app(config, full_env, listen="127.0.0.1:0")
        if start:
            await app.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
        router = RunningRouter(app, channel, router_pb2_grpc.RouterServiceStub(channel),
                               health_pb2_grpc.HealthStub(channel))
        running.append(router)
        return router

    yield start
    for router in running:
        await router.channel.close()
        await router.app.shutdown(drain_delay_s=0, grace_s=0)


Fakes = Callable[..., Awaitable[FakeUpstream]]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    """fakes(kind="openai" | "anthropic") → a started fake upstream requiring the test key."""
    started: list[FakeUpstream] = []

    async def start(kind: str = "openai") -> FakeUpstream:
        cls = AnthropicFake if kind == "anthropic" else OpenAIFake
        fake = await cls(required_key=KEY).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()
