"""SIGTERM in a real subprocess: NOT_SERVING at once, in-flight stream finishes, exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from tests.integration.serving import wait_serving

CONFIG = """
[server]
drain_delay = 1.0
grace = 10.0

[[providers]]
name = "slow-mock"
kind = "mock"
models = ["mock-slow"]
mock = { latency = 0.25, chunk_count = 8 }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sigterm_drains_in_flight_stream_and_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    port = _free_port()
    env = {**os.environ, "PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp_path / "reg.json")}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "OPENROUTER_API_KEY", "OLLAMA_HOST"):
        env.pop(key, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", "serve", "--config", str(config),
        "--listen", f"127.0.0.1:{port}", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        await wait_serving(f"127.0.0.1:{port}", 20)
        stub = router_pb2_grpc.RouterServiceStub(channel)
        request = pb.StreamChatRequest(
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="one two three four five")])
        call = stub.StreamChat(request, timeout=20)
        events = [await call.read(), await call.read()]  # start + first delta
        assert events[1].WhichOneof("event") == "delta"

        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        status = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING

        while (event := await call.read()) is not grpc.aio.EOF:
            events.append(event)
        assert events[-1].WhichOneof("event") == "end", "the in-flight stream was cut"
        assert events[-1].end.finish_reason == pb.FINISH_REASON_STOP
        code = await asyncio.wait_for(process.wait(), timeout=20)
        assert code == 0
    finally:
        await channel.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "Traceback" not in stderr


async def test_a_metrics_port_in_use_stops_with_exit_2_and_names_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp_path / "reg.json"),
           "PROVIDER_ROUTER_METRICS_HOST": "127.0.0.1"}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "OPENROUTER_API_KEY", "OLLAMA_HOST"):
        env.pop(key, None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["PROVIDER_ROUTER_METRICS_PORT"] = str(taken.getsockname()[1])
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "provider_router", "serve", "--listen", "127.0.0.1:0", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert b"metrics.port" in stderr
    assert b"Traceback" not in stderr
