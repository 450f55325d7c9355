"""Shared pieces of the chaos suite (tests/integration/test_chaos_*.py).

Every chaos test runs the real grpc.aio server against real HTTP fakes: a `primary` that
misbehaves and one or more fallbacks, all serving the alias `chat` in a fixed failover order
(`routing.strategy = "failover"`), with small timeouts so each fault resolves in well under a
second or two. Helpers here build that config, call Chat / StreamChat, and read the status
details (AttemptsDetail, RetryInfo) of a failed call.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb
from tests.fakes.base import FakeUpstream, Recorded
from tests.fakes.harness import KEY, KEY_ENV
from tests.integration.conftest import RunningRouter, StartRouter

ENV = {KEY_ENV: KEY}
ALIAS = "chat"
PRICES = {"primary": (1.0, 2.0), "backup": (3.0, 4.0), "big": (5.0, 6.0)}
"""(input, output) USD per Mtok of each provider's model; cost = 12 · in + 5 · out (per M)."""

# Defaults that keep every fault short; tests override single keys.
RESILIENCE: Mapping[str, object] = {
    "retry_base": 0.05, "retry_cap": 0.2, "rate_limit_floor": 0.2, "min_attempt": 0.2,
    "attempt_reserve": 1.0, "attempt_floor": 0.2, "breaker_fail_max": 50, "ramp": 0,
    "health_interval": 0,
}


@dataclass
class Upstream:
    """One provider of the test config, backed by a fake (or the built-in mock)."""

    name: str
    kind: str = "openai"
    fake: FakeUpstream | None = None
    model: str = ""
    context_window: int = 0
    rate_limit_rpm: int = 0
    rate_limit_tpm: int = 0
    timeouts: Mapping[str, float] = field(default_factory=dict)
    mock: Mapping[str, object] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """The model this provider serves in the alias."""
        return self.model or f"{self.name}-model"

    def toml(self) -> str:
        """The [[providers]] table."""
        price_in, price_out = PRICES.get(self.name, (1.0, 1.0))
        lines = ["[[providers]]", f'name = "{self.name}"', f'kind = "{self.kind}"']
        if self.fake is not None:
            lines += [f'base_url = "{self.fake.base_url}"', f'api_key_env = "{KEY_ENV}"']
        if self.rate_limit_rpm:
            lines.append(f"rate_limit_rpm = {self.rate_limit_rpm}")
        if self.rate_limit_tpm:
            lines.append(f"rate_limit_tpm = {self.rate_limit_tpm}")
        lines += ["[[providers.models]]", f'name = "{self.model_name}"',
                  f"input_per_mtok = {price_in}", f"output_per_mtok = {price_out}"]
        if self.context_window:
            lines.append(f"context_window = {self.context_window}")
        if self.timeouts:
            lines.append("[providers.timeouts]")
            lines += [f"{k} = {v}" for k, v in self.timeouts.items()]
        if self.mock:
            lines.append("[providers.mock]")
            lines += [f"{k} = {_value(v)}" for k, v in self.mock.items()]
        return "\n".join(lines)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def config(upstreams: list[Upstream], server: Mapping[str, object] | None = None,
           **resilience: object) -> str:
    """A config whose alias `chat` tries the upstreams in the given order."""
    keys = {**RESILIENCE, **resilience}
    targets = ", ".join(f'"{u.name}/{u.model_name}"' for u in upstreams)
    order = ", ".join(f'"{u.name}"' for u in upstreams)
    parts = ["[server]", *[f"{k} = {_value(v)}" for k, v in (server or {}).items()],
             "[resilience]", *[f"{k} = {_value(v)}" for k, v in keys.items()],
             "[routing]", 'strategy = "failover"', f"failover_order = [{order}]",
             "[routing.aliases]", f"{ALIAS} = [{targets}]"]
    return "\n".join(parts) + "\n\n" + "\n\n".join(u.toml() for u in upstreams) + "\n"


async def serve(start_router: StartRouter, upstreams: list[Upstream],
                server: Mapping[str, object] | None = None,
                **resilience: object) -> RunningRouter:
    """The router configured with the upstreams (see `config`)."""
    return await start_router(config(upstreams, server, **resilience), env=ENV)


# --- calls -------------------------------------------------------------------------------------


def chat_request(text: str = "Say hello", model: str = ALIAS) -> pb.ChatRequest:
    """A one-message Chat request for the alias."""
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])


def stream_request(text: str = "Say hello", model: str = ALIAS) -> pb.StreamChatRequest:
    """A one-message StreamChat request for the alias."""
    return pb.StreamChatRequest(routing=pb.RoutingOptions(model=model),
                                messages=[pb.ChatMessage(role=pb.ROLE_USER, content=text)])


@dataclass
class Streamed:
    """What one StreamChat call produced: its events and, if it failed, the error."""

    events: list[pb.StreamChatResponse]
    error: grpc.aio.AioRpcError | None
    elapsed: float

    def kinds(self) -> list[str]:
        """The event kinds in order ("start", "delta", "restart", "end")."""
        return [str(e.WhichOneof("event")) for e in self.events]

    def text(self) -> str:
        """Every delta's text, restarts included (what a naive caller would show)."""
        return "".join(e.delta.text for e in self.events if e.WhichOneof("event") == "delta")

    def text_after_restart(self) -> str:
        """The answer as a caller honouring restart events sees it."""
        out: list[str] = []
        for event in self.events:
            kind = event.WhichOneof("event")
            if kind == "restart":
                out.clear()
            elif kind == "delta":
                out.append(event.delta.text)
        return "".join(out)

    @property
    def end(self) -> pb.StreamEnd:
        """The end event (asserts there is one)."""
        assert self.events and self.events[-1].WhichOneof("event") == "end", self.kinds()
        return self.events[-1].end


async def stream(router: RunningRouter, request: pb.StreamChatRequest | None = None,
                 timeout: float | None = 10.0) -> Streamed:
    """Run one StreamChat to its end, collecting events and the error, if any."""
    events: list[pb.StreamChatResponse] = []
    started = time.monotonic()
    try:
        async for event in router.stub.StreamChat(request or stream_request(), timeout=timeout):
            events.append(event)
    except grpc.aio.AioRpcError as error:
        return Streamed(events, error, time.monotonic() - started)
    return Streamed(events, None, time.monotonic() - started)


async def chat(router: RunningRouter, request: pb.ChatRequest | None = None,
               timeout: float | None = 10.0) -> tuple[pb.ChatResponse, float]:
    """One Chat and how long it took."""
    started = time.monotonic()
    response = await router.stub.Chat(request or chat_request(), timeout=timeout)
    return response, time.monotonic() - started


async def chat_error(router: RunningRouter, request: pb.ChatRequest | None = None,
                     timeout: float | None = 10.0) -> tuple[grpc.aio.AioRpcError, float]:
    """One Chat that must fail, and how long it took."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.Chat(request or chat_request(), timeout=timeout)
    return caught.value, time.monotonic() - started


# --- what happened ---------------------------------------------------------------------------


def outcomes(attempts: object) -> list[tuple[str, int]]:
    """(provider, outcome) per attempt."""
    return [(a.provider, a.outcome) for a in attempts]  # type: ignore[attr-defined]


def attempts_detail(error: grpc.aio.AioRpcError) -> pb.AttemptsDetail:
    """The AttemptsDetail of a failed call's status (asserts there is one)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    detail = pb.AttemptsDetail()
    assert any(d.Unpack(detail) for d in status.details if d.Is(detail.DESCRIPTOR)), status
    return detail


def retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay of a failed call's status, in seconds (None when absent)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    info = error_details_pb2.RetryInfo()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call's status."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details if d.Is(info.DESCRIPTOR)), status
    return str(info.reason)


def gaps(requests: list[Recorded]) -> list[float]:
    """Seconds between consecutive requests a fake received."""
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


def cost(provider: str, prompt: int = 12, completion: int = 5) -> float:
    """What an answer from `provider`'s model costs (the fakes report 12 + 5 tokens)."""
    price_in, price_out = PRICES[provider]
    return (prompt * price_in + completion * price_out) / 1_000_000


async def route(router: RunningRouter, model: str = ALIAS,
                fallbacks: tuple[str, ...] = ()) -> pb.RouteResponse:
    """Route's decision and explanation for `model` (fallbacks as "provider/model")."""
    targets = [pb.RouteTarget(provider=f.split("/")[0], model=f.split("/", 1)[1])
               for f in fallbacks]
    request = pb.RouteRequest(routing=pb.RoutingOptions(model=model, fallbacks=targets))
    return await router.stub.Route(request, timeout=5)


async def exclusion(router: RunningRouter, provider: str, model: str = ALIAS) -> int | None:
    """The exclusion reason Route gives `provider`'s candidate, or None when it is eligible."""
    decision = await route(router, model)
    for candidate in decision.candidates:
        if candidate.provider == provider:
            return None if candidate.eligible else int(candidate.exclusion_reason)
    raise AssertionError(f"{provider} is no candidate of {model}: {decision}")


async def provider_status(router: RunningRouter, name: str) -> pb.ProviderStatus:
    """ListProviders' live status of one provider."""
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(names=[name]), timeout=5)
    return listing.providers[0].status


async def provider_health(router: RunningRouter, name: str) -> int:
    """The gRPC health status of `provider_router.provider.<name>`."""
    response = await router.health.Check(
        health_pb2.HealthCheckRequest(service=f"provider_router.provider.{name}"), timeout=5)
    return int(response.status)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> bool:
    """Poll `check` until it holds or `within` seconds pass (for async publications)."""
    until = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() >= until:
            return False
        await asyncio.sleep(0.02)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


MODES = ("chat", "stream")
"""Every chaos scenario runs through both RPCs."""


@dataclass
class Answer:
    """A successful Chat or StreamChat, in one shape."""

    provider: str
    model: str
    text: str
    finish_reason: int
    usage: pb.Usage
    cost_usd: float | None
    attempts: list[pb.Attempt]
    elapsed: float
    streamed: Streamed | None = None


async def answer(router: RunningRouter, mode: str, text: str = "Say hello",
                 timeout: float | None = 10.0) -> Answer:
    """Chat or StreamChat (per `mode`) that must succeed."""
    if mode == "chat":
        response, elapsed = await chat(router, chat_request(text), timeout)
        return Answer(response.provider, response.model, response.message.content,
                      response.finish_reason, response.usage,
                      response.cost_usd if response.HasField("cost_usd") else None,
                      list(response.attempts), elapsed)
    streamed = await stream(router, stream_request(text), timeout)
    assert streamed.error is None, (streamed.error, streamed.kinds())
    end = streamed.end
    return Answer(end.provider, end.model, streamed.text_after_restart(), end.finish_reason,
                  end.usage, end.cost_usd if end.HasField("cost_usd") else None,
                  list(end.attempts), streamed.elapsed, streamed)


async def failure(router: RunningRouter, mode: str, text: str = "Say hello",
                  timeout: float | None = 10.0) -> tuple[grpc.aio.AioRpcError, float]:
    """Chat or StreamChat (per `mode`) that must fail: its error and how long it took."""
    if mode == "chat":
        return await chat_error(router, chat_request(text), timeout)
    streamed = await stream(router, stream_request(text), timeout)
    assert streamed.error is not None, streamed.kinds()
    assert "end" not in streamed.kinds()
    return streamed.error, streamed.elapsed
