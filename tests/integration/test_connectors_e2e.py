"""Chat and StreamChat through the real gRPC server against each provider's fake upstream.

Covers, per protocol: the normalized answer, streaming deltas then one end event, usage and
cost, tool calls, vision parts, a stream broken mid-answer ending in an error status, and
the key never appearing in a log line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from provider_router.domain import ProviderKind
from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Fault, Script
from tests.fakes.harness import FAKES, KEY, KEY_ENV, MODELS
from tests.integration.conftest import RunningRouter, StartRouter

KINDS = (ProviderKind.OPENAI, ProviderKind.OPENAI_COMPATIBLE, ProviderKind.ANTHROPIC,
         ProviderKind.GEMINI, ProviderKind.OLLAMA)
INPUT_PER_MTOK, OUTPUT_PER_MTOK = 1.0, 2.0
# The fakes report 12 prompt and 5 completion tokens.
EXPECTED_COST = (12 * INPUT_PER_MTOK + 5 * OUTPUT_PER_MTOK) / 1_000_000


def config_for(kind: ProviderKind, fake: FakeUpstream) -> str:
    key_line = "" if kind is ProviderKind.OPENAI_COMPATIBLE else f'api_key_env = "{KEY_ENV}"'
    return f"""
[[providers]]
name = "upstream"
kind = "{kind.value}"
base_url = "{fake.base_url}"
{key_line}
capabilities = ["chat", "streaming", "tools", "vision"]
[[providers.models]]
name = "{MODELS[kind]}"
input_per_mtok = {INPUT_PER_MTOK}
output_per_mtok = {OUTPUT_PER_MTOK}
[providers.timeouts]
first_token = 2.0
idle = 2.0
"""


@pytest.fixture(params=KINDS, ids=lambda k: k.value)
async def served(request: pytest.FixtureRequest, start_router: StartRouter
                 ) -> AsyncIterator[tuple[ProviderKind, FakeUpstream, RunningRouter]]:
    """A fake upstream and a router configured with it as its only provider."""
    kind: ProviderKind = request.param
    compatible = kind is ProviderKind.OPENAI_COMPATIBLE
    fake = await FAKES[kind](required_key=None if compatible else KEY).start()
    router = await start_router(config_for(kind, fake), env={KEY_ENV: KEY})
    yield kind, fake, router
    await fake.close()


def chat_request(kind: ProviderKind, text: str = "Say hello",
                 **fields: Any) -> dict[str, Any]:
    """The fields of a ChatRequest / StreamChatRequest for one user message."""
    return {"routing": pb.RoutingOptions(model=MODELS[kind]),
            "messages": [pb.ChatMessage(role=pb.ROLE_USER, content=text)], **fields}


async def test_chat(served: tuple[ProviderKind, FakeUpstream, RunningRouter],
                    caplog: pytest.LogCaptureFixture) -> None:
    kind, fake, router = served
    caplog.set_level(logging.DEBUG)
    response = await router.stub.Chat(pb.ChatRequest(**chat_request(kind)), timeout=10)
    assert response.provider == "upstream"
    assert response.message.content == "Hello, world!"
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 5)
    assert not response.usage.estimated
    assert response.HasField("cost_usd")
    assert response.cost_usd == pytest.approx(EXPECTED_COST)
    assert [a.outcome for a in response.attempts] == [pb.ATTEMPT_OUTCOME_SUCCESS]
    assert len(fake.chat_requests()) == 1
    assert KEY not in caplog.text


async def test_stream_chat(served: tuple[ProviderKind, FakeUpstream, RunningRouter],
                           caplog: pytest.LogCaptureFixture) -> None:
    kind, fake, router = served
    caplog.set_level(logging.DEBUG)
    fake.fail(Fault(split="random", comments=True))
    events = [e async for e in router.stub.StreamChat(
        pb.StreamChatRequest(**chat_request(kind)), timeout=10)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 4
    assert events[0].start.provider == "upstream"
    assert "".join(e.delta.text for e in events[1:-1]) == "Hello, world!"
    end = events[-1].end
    assert end.finish_reason == pb.FINISH_REASON_STOP
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (12, 5)
    assert end.cost_usd == pytest.approx(EXPECTED_COST)
    assert KEY not in caplog.text


async def test_tool_calls(served: tuple[ProviderKind, FakeUpstream, RunningRouter]) -> None:
    kind, fake, router = served
    fake.script = Script(chunks=(), tool_calls=(("get_weather", '{"city": "Paris"}'),))
    parameters = struct_pb2.Struct()
    parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    fields = chat_request(kind, "Weather in Paris?",
                          tools=[pb.Tool(name="get_weather", description="Weather",
                                         parameters=parameters)])
    response = await router.stub.Chat(pb.ChatRequest(**fields), timeout=10)
    assert response.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    [call] = response.message.tool_calls
    assert call.name == "get_weather" and call.id
    assert call.arguments_json.replace(" ", "") == '{"city":"Paris"}'
    events = [e async for e in router.stub.StreamChat(pb.StreamChatRequest(**fields), timeout=10)]
    fragments = [d for e in events if e.WhichOneof("event") == "delta"
                 for d in e.delta.tool_call_deltas]
    assert fragments[0].name == "get_weather"
    assert "".join(f.arguments_fragment for f in fragments).replace(" ", "") == (
        '{"city":"Paris"}')
    assert events[-1].end.finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_vision_parts_reach_the_provider(
        served: tuple[ProviderKind, FakeUpstream, RunningRouter]) -> None:
    kind, fake, router = served
    message = pb.ChatMessage(role=pb.ROLE_USER, content_parts=[
        pb.ContentPart(text="What is in this image?"),
        pb.ContentPart(image=pb.ImagePart(data=b"\x89PNG\r\n", mime_type="image/png"))])
    await router.stub.Chat(pb.ChatRequest(routing=pb.RoutingOptions(model=MODELS[kind]),
                                          messages=[message]), timeout=10)
    sent = str(fake.chat_requests()[-1].body)
    assert "iVBORw0K" in sent  # the image's base64, in the provider's own shape
    assert "What is in this image?" in sent


async def test_stream_broken_mid_answer_ends_with_an_error(
        served: tuple[ProviderKind, FakeUpstream, RunningRouter]) -> None:
    kind, fake, router = served
    fake.fail(Fault(cut_after=len(fake.frames({}, "m")[0]) - 1, times=10))
    events: list[pb.StreamChatResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in router.stub.StreamChat(pb.StreamChatRequest(**chat_request(kind)),
                                                  timeout=10):
            events.append(event)
    assert caught.value.code() != grpc.StatusCode.OK
    assert all(e.WhichOneof("event") != "end" for e in events)


async def test_a_key_echoed_by_the_provider_reaches_no_log_or_status(
        served: tuple[ProviderKind, FakeUpstream, RunningRouter],
        caplog: pytest.LogCaptureFixture) -> None:
    kind, fake, router = served
    caplog.set_level(logging.DEBUG)
    fake.fail(Fault(status=401, message=f"Incorrect API key provided: {KEY}", times=10))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(pb.ChatRequest(**chat_request(kind)), timeout=10)
    error = caught.value
    assert error.code() != grpc.StatusCode.OK
    shown = f"{error.details()} {error.trailing_metadata()} {error.debug_error_string()}"
    assert KEY not in shown and KEY[8:] not in shown
    assert caplog.records  # the failed attempt was logged ...
    assert KEY not in caplog.text and KEY[8:] not in caplog.text  # ... without the key
