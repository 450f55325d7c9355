"""`serve --workers 2` in a real subprocess: both workers serve, SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from tests.integration.serving import OWN_CONNECTION, wait_serving

CONFIG = """
[server]
listen = "127.0.0.1:{port}"
drain_delay = 0.2
grace = 5.0

[metrics]
port = {metrics}
host = "127.0.0.1"

[autoregister]
enabled = false

[[providers]]
name = "mock"
kind = "mock"
models = ["mock-1"]
"""


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free ports."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = int(sock.getsockname()[1])
        if first + count < 65536 and all(_free(first + i) for i in range(count)):
            return first
    raise AssertionError("no consecutive free ports")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def _chat_over_new_connection(target: str) -> None:
    async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        answer = await router_pb2_grpc.RouterServiceStub(channel).Chat(
            pb.ChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")]),
            timeout=10)
        assert answer.provider == "mock"


async def _chats_served(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("provider_router_rpcs_total{") and 'method="Chat"' in line \
                and 'code="OK"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_two_workers_share_the_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    first = _free_ports(3)  # the gRPC port, then one metrics port per worker
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(port=first, metrics=first + 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    env["PROVIDER_ROUTER_STATE_REGISTRY_FILE"] = str(tmp_path / "registry.json")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", "serve", "--config", str(config),
        "--workers", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    target = f"127.0.0.1:{first}"
    try:
        await wait_serving(target, 30, "the workers")
        workers = _children(process.pid)
        assert len(workers) == 2
        # Every metrics port must answer, so both workers are up before the traffic starts.
        for index in range(2):
            deadline = time.monotonic() + 20
            while True:
                try:
                    await _chats_served(first + 1 + index)
                    break
                except aiohttp.ClientError:
                    assert time.monotonic() < deadline, f"worker {index} never came up"
                    await asyncio.sleep(0.1)
        await asyncio.gather(*(_chat_over_new_connection(target) for _ in range(24)))
        served = [await _chats_served(first + 1 + index) for index in range(2)]
        assert sum(served) == 24
        assert all(count > 0 for count in served), f"one worker took every call: {served}"

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
        assert code == 0
        assert not set(workers) & set(_children(process.pid))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "Traceback" not in stderr
    assert stderr.count("serving on port") == 2
    assert "all workers stopped" in stderr
