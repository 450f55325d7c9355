"""The real server reaching its providers through an outbound proxy from the environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.harness import KEY
from tests.fakes.proxy import ForwardProxy
from tests.integration.conftest import Fakes, StartRouter


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    running = await ForwardProxy().start()
    yield running
    await running.close()


def _config(base_url: str) -> str:
    return f"""
[autoregister]
enabled = false

[resilience]
health_interval = 0  # no probe: the chat is the proxy's first request

[[providers]]
name = "corp"
kind = "openai_compatible"
base_url = "{base_url}"
api_key_env = "CORP_KEY"
models = ["gpt-4o-mini"]
"""


async def test_chat_goes_through_http_proxy(start_router: StartRouter, fakes: Fakes,
                                            proxy: ForwardProxy) -> None:
    fake = await fakes("openai")
    router = await start_router(_config(fake.base_url),
                                env={"CORP_KEY": KEY, "http_proxy": proxy.url})
    answer = await router.stub.Chat(pb.ChatRequest(
        routing=pb.RoutingOptions(model="corp/gpt-4o-mini"),
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="through the proxy")]), timeout=10)
    assert answer.provider == "corp"
    assert f"POST {fake.base_url}/chat/completions HTTP/1.1" in proxy.request_lines


async def test_no_proxy_keeps_local_providers_direct(start_router: StartRouter, fakes: Fakes,
                                                     proxy: ForwardProxy) -> None:
    fake = await fakes("openai")
    router = await start_router(_config(fake.base_url), env={
        "CORP_KEY": KEY, "HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"})
    answer = await router.stub.Chat(pb.ChatRequest(
        routing=pb.RoutingOptions(model="corp/gpt-4o-mini"),
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="direct")]), timeout=10)
    assert answer.provider == "corp"
    assert proxy.request_lines == []
