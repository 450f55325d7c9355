"""Three `provider-router serve` processes on one real redis-server behave as one router.

Registry: a provider registered on A is listed by B and C. Breakers: a provider failing
through A is skipped by B without B ever calling it. Limits: a global RPM limit holds within
5% while all three are driven at several times the limit. Redis killed mid-load: not one
request fails, and the replicas resync once it is back.

The limits run with `[state] timeout = 0.5`: this box is shared by many test processes, and a
5 ms budget would send many admissions to the local fallback (limit / replicas), which
measures the fallback rather than the global limit. The fallback has its own unit tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
import redis.asyncio as redis

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import OpenAIFake
from tests.integration.serving import wait_serving
from tests.redis.server import RedisServer, free_port

RPM = 60
"""The global limit under test: a burst of 60, then one request a second."""

CONFIG = """
[server]
listen = "127.0.0.1:{port}"
drain_delay = 0.1
grace = 2.0

[state]
url = "{redis}"
registry_file = "{registry}"
replicas = 3
timeout = 0.5

[autoregister]
enabled = false

[resilience]
breaker_fail_max = 2
breaker_reset_timeout = 60
retry_max_attempts = 1
health_interval = 0

[[providers]]
name = "flaky"
kind = "openai_compatible"
base_url = "{flaky}"
models = ["m"]
priority = 10

[[providers]]
name = "steady"
kind = "openai_compatible"
base_url = "{steady}"
models = ["m"]
priority = 1

[[providers]]
name = "limited"
kind = "openai_compatible"
base_url = "{limited}"
models = ["lim"]
rate_limit_rpm = {rpm}

[[providers]]
name = "narrow"
kind = "openai_compatible"
base_url = "{narrow}"
models = ["nar"]
max_concurrent = 2
"""


@dataclass
class Replica:
    """One router process and a channel to it."""

    process: asyncio.subprocess.Process
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceStub


@dataclass
class Cluster:
    """Three replicas, their fake upstreams and their Redis."""

    replicas: list[Replica]
    redis: RedisServer
    flaky: OpenAIFake
    steady: OpenAIFake
    limited: OpenAIFake
    narrow: OpenAIFake


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")])


async def eventually(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Wait (generously: the machine is loaded) until the async `check()` is true."""
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.1)


async def _start(tmp_path: Path, index: int, redis: RedisServer,
                 fakes: tuple[OpenAIFake, ...]) -> Replica:
    port = free_port()
    config = tmp_path / f"router-{index}.toml"
    flaky, steady, limited, narrow = (fake.base_url for fake in fakes)
    config.write_text(CONFIG.format(port=port, redis=redis.url, rpm=RPM, flaky=flaky,
                                    steady=steady, limited=limited, narrow=narrow,
                                    registry=tmp_path / f"registry-{index}.json"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", "serve", "--config", str(config), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    target = f"127.0.0.1:{port}"
    await wait_serving(target, 60, f"replica {index}")
    channel = grpc.aio.insecure_channel(target)
    return Replica(process, channel, router_pb2_grpc.RouterServiceStub(channel))


@pytest.fixture
async def cluster(tmp_path: Path, own_redis_server: RedisServer) -> AsyncIterator[Cluster]:
    fakes = tuple([await OpenAIFake().start() for _ in range(4)])
    replicas: list[Replica] = []
    try:
        for index in range(3):
            replicas.append(await _start(tmp_path, index, own_redis_server, fakes))
        yield Cluster(replicas, own_redis_server, *fakes)  # type: ignore[arg-type]
    finally:
        for replica in replicas:
            await replica.channel.close()
            if replica.process.returncode is None:
                replica.process.terminate()
        for replica in replicas:
            await asyncio.wait_for(replica.process.wait(), timeout=30)
            stderr = await replica.process.stderr.read() if replica.process.stderr else b""
            assert b"Traceback" not in stderr, stderr.decode()
        for fake in fakes:
            await fake.close()


async def _listed(replica: Replica) -> dict[str, pb.ProviderInfo]:
    answer = await replica.stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
    return {info.spec.name: info for info in answer.providers}


async def _all_list(replicas: tuple[Replica, ...], name: str) -> bool:
    return all([name in await _listed(r) for r in replicas])


async def test_registry_and_breakers_are_shared(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    # Two failures through A open flaky's breaker ...
    cluster.flaky.down(Fault(status=503))
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await a.stub.Chat(chat("flaky/m"), timeout=10)

    async def open_on_b_and_c() -> bool:
        states = [(await _listed(r))["flaky"].status.breaker_state for r in (b, c)]
        return all(s == pb.BREAKER_STATE_OPEN for s in states)

    await eventually(open_on_b_and_c)
    # ... so B never calls flaky: its calls go to the next candidate.
    calls_before = len(cluster.flaky.chat_requests())
    for _ in range(5):
        answer = await b.stub.Chat(chat("m"), timeout=10)
        assert answer.provider == "steady"
    assert len(cluster.flaky.chat_requests()) == calls_before
    route = await c.stub.Route(pb.RouteRequest(routing=pb.RoutingOptions(model="m")),
                               timeout=10)
    excluded = {r.provider: r.exclusion_reason for r in route.candidates
                if r.exclusion_reason}
    assert excluded.get("flaky") == pb.EXCLUSION_REASON_BREAKER_OPEN

    # A runtime registration on A is listed by B and C.
    spec = pb.ProviderSpec(name="late", kind=pb.PROVIDER_KIND_MOCK,
                           models=[pb.ModelSpec(name="late-1")])
    await a.stub.Register(pb.RegisterRequest(provider=spec), timeout=10)
    await eventually(lambda: _all_list((b, c), "late"))


async def _drive(replica: Replica, model: str, calls: int, outcomes: list[str]) -> None:
    for _ in range(calls):
        try:
            await replica.stub.Chat(chat(model), timeout=10)
            outcomes.append("OK")
        except grpc.aio.AioRpcError as error:
            outcomes.append(error.code().name)


async def test_global_rpm_holds_within_five_percent(cluster: Cluster) -> None:
    outcomes: list[str] = []
    started = time.monotonic()
    # 3 replicas x 8 callers x 15 calls = 360 offered, 6x the limit, within a few seconds.
    await asyncio.gather(*(_drive(replica, "limited/lim", 15, outcomes)
                           for replica in cluster.replicas for _ in range(8)))
    elapsed = time.monotonic() - started
    admitted = outcomes.count("OK")
    allowed = RPM + RPM / 60.0 * elapsed  # the burst, plus the refill while it ran
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}, outcomes
    assert len(cluster.limited.chat_requests()) == admitted
    assert RPM <= admitted <= allowed * 1.05, (admitted, allowed)


async def test_max_concurrent_counts_calls_on_every_replica(cluster: Cluster) -> None:
    # Every call is held for 3 s upstream, so the first two hold both global slots while
    # the other four arrive (two per replica: each replica alone would admit them).
    cluster.narrow.fail(Fault(headers_delay=3.0, times=10))
    outcomes: list[str] = []
    await asyncio.gather(*(_drive(replica, "narrow/nar", 1, outcomes)
                           for replica in cluster.replicas for _ in range(2)))
    assert sorted(outcomes).count("OK") == 2, outcomes
    assert len(cluster.narrow.chat_requests()) == 2
    # The slots come back when the calls end: the next call gets one.
    cluster.narrow.recover()
    await _drive(cluster.replicas[2], "narrow/nar", 1, outcomes)
    assert outcomes[-1] == "OK"


async def test_redis_killed_mid_load_fails_nothing_and_resyncs(cluster: Cluster) -> None:
    a, b, c = cluster.replicas
    cluster.flaky.down(Fault(status=503))
    for _ in range(2):  # flaky's breaker opens on A (and, through Redis, everywhere)
        with pytest.raises(grpc.aio.AioRpcError):
            await a.stub.Chat(chat("flaky/m"), timeout=10)
    outcomes: list[str] = []

    async def outage() -> None:
        await asyncio.sleep(1.0)
        cluster.redis.kill()
        await asyncio.sleep(2.0)
        cluster.redis.start()

    await asyncio.gather(outage(), *(_drive(replica, "m", 40, outcomes)
                                     for replica in cluster.replicas for _ in range(4)))
    assert outcomes == ["OK"] * len(outcomes)
    # Back on Redis (empty after its restart): a registration on B reaches A and C again.
    spec = pb.ProviderSpec(name="after", kind=pb.PROVIDER_KIND_MOCK,
                           models=[pb.ModelSpec(name="after-1")])

    async def registered_everywhere() -> bool:
        try:
            await b.stub.Register(pb.RegisterRequest(provider=spec), timeout=10)
        except grpc.aio.AioRpcError:
            return False
        return await _all_list((a, c), "after")

    await eventually(registered_everywhere)

    # Redis lost the breaker with its restart; the replicas wrote it back when they resynced.
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        fields = await client.hkeys("provider-router:breakers")
        assert any(f.startswith(b"flaky\x1f") for f in fields), fields
    finally:
        await client.aclose()
