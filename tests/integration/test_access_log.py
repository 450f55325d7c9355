"""Access lines from the real server: one per RPC, prompt and answer only when asked for."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.integration.chaos import ENV, Upstream, chat_request, config, stream_request
from tests.integration.conftest import Fakes, StartRouter

PROMPT = "tell nobody: margarine"


def _access(err: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("type") == "access"]


async def _calls(start_router: StartRouter, fakes: Fakes, logging: str) -> None:
    """A Chat, a StreamChat and a ListProviders; returns once their lines are written."""
    fake = await fakes()
    toml = config([Upstream("primary", fake=fake)]) + f"\n[logging]\n{logging}\n"
    router = await start_router(toml, env=ENV)
    await router.stub.Chat(chat_request(PROMPT), timeout=10,
                           metadata=(("x-request-id", "chat-1"),))
    assert [e async for e in router.stub.StreamChat(stream_request(PROMPT), timeout=10)]
    await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
    assert router.app.calls is not None
    await asyncio.to_thread(router.app.calls.close)  # the writer thread wrote them all


async def test_one_line_per_rpc_without_the_text(start_router: StartRouter, fakes: Fakes,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    await _calls(start_router, fakes, "")
    err = capfd.readouterr().err
    lines = _access(err)
    assert [line["method"] for line in lines] == ["Chat", "StreamChat", "ListProviders"]
    chat, streamed, listed = lines
    assert chat["request_id"] == "chat-1" and chat["status"] == "OK"
    assert chat["provider"] == "primary" and chat["model"] == "primary-model"
    assert chat["input_tokens"] == 12 and chat["output_tokens"] == 5
    assert streamed["ttft_ms"] > 0 and streamed["attempts"] == 1
    assert "provider" not in listed
    assert "margarine" not in err and "Hello" not in err


async def test_content_true_adds_prompt_and_answer(start_router: StartRouter, fakes: Fakes,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    await _calls(start_router, fakes, "content = true")
    chat, streamed, _ = _access(capfd.readouterr().err)
    for line in (chat, streamed):
        assert line["prompt"] == [{"role": "user", "content": PROMPT}]
        assert line["answer"] == "Hello, world!"


async def test_access_false_writes_no_lines(start_router: StartRouter, fakes: Fakes,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    await _calls(start_router, fakes, "access = false")
    assert _access(capfd.readouterr().err) == []
