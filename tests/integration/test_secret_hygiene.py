"""Secret hygiene of the real server process: known secrets (a provider key in the server's
environment, a key given write-only at Register, the admin key) never appear in responses,
error details, debug logs, the /metrics scrape, or (the environment's) the registry file.

The server runs as `provider-router serve` in a subprocess at debug level, so what is checked
is what an operator would see on its stderr; the upstreams are real fakes that misbehave the
way providers do, including echoing the key they were sent back in their error bodies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import OpenAIFake
from tests.integration.serving import wait_serving

ENV_SECRET = "sk-envHYGIENE-5d1f0c9a7b3e4d2f8a6c"
REGISTER_SECRET = "sk-regHYGIENE-9e8d7c6b5a4f3e2d1c0b"
ADMIN_SECRET = "adm-HYGIENE-0a1b2c3d4e5f6a7b8c9d"
PROXY_SECRET = "pxy-HYGIENE-7c6d5e4f3a2b1c0d9e8f"
SECRETS = (ENV_SECRET, REGISTER_SECRET, ADMIN_SECRET, PROXY_SECRET)

CONFIG = """
[logging]
level = "debug"

[resilience]
health_interval = 0  # no probes: every call below reaches its upstream

[metrics]
host = "127.0.0.1"
port = {metrics_port}

[[providers]]
name = "corp"
kind = "openai_compatible"
base_url = "{corp_url}"
api_key_env = "CORP_API_KEY"
models = ["corp-1"]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(name: str, base_url: str, **kwargs: Any) -> pb.ProviderSpec:
    return pb.ProviderSpec(name=name, kind=pb.PROVIDER_KIND_OPENAI_COMPATIBLE,
                           base_url=base_url, models=[pb.ModelSpec(name=f"{name}-1")], **kwargs)


def _chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(routing=pb.RoutingOptions(model=model),
                          messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")])


class Seen:
    """Everything a caller got back: answers, and errors with their decoded details."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.codes: list[grpc.StatusCode] = []

    async def call(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            self.texts.append(str(await make()))
        except grpc.aio.AioRpcError as error:
            self.codes.append(error.code())
            self.texts += [str(error.details()), str(error.debug_error_string()),
                           str(error.trailing_metadata()), str(error.initial_metadata())]
            status = rpc_status.from_call(error)
            if status is not None:
                self.texts.append(str(status))  # every detail message, unpacked or not

    async def stream(self, call: Any) -> None:
        try:
            async for event in call:
                self.texts.append(str(event))
        except grpc.aio.AioRpcError as error:
            self.codes.append(error.code())
            self.texts += [str(error.details()), str(error.trailing_metadata())]


async def _exercise(target: str, corp: OpenAIFake, registered: OpenAIFake) -> Seen:
    seen = Seen()
    admin = (("authorization", f"Bearer {ADMIN_SECRET}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        # The configured provider: the upstream answers 401 and echoes the key it got.
        await seen.call(lambda: stub.Chat(_chat("corp/corp-1"), metadata=admin, timeout=10))
        await seen.stream(stub.StreamChat(pb.StreamChatRequest(
            routing=pb.RoutingOptions(model="corp/corp-1"),
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="x")]), metadata=admin,
            timeout=10))
        # A provider registered with a write-only key, whose upstream leaks it in a 500.
        await seen.call(lambda: stub.Register(pb.RegisterRequest(provider=_spec(
            "reg", registered.base_url, api_key=REGISTER_SECRET)), metadata=admin, timeout=10))
        await seen.call(lambda: stub.Chat(_chat("reg/reg-1"), metadata=admin, timeout=10))
        # Bad registrations carrying the key: invalid fields, a refused URL, a stolen env key.
        await seen.call(lambda: stub.Register(pb.RegisterRequest(provider=_spec(
            "Bad Name!", "ftp://x", api_key=REGISTER_SECRET)), metadata=admin, timeout=10))
        await seen.call(lambda: stub.Register(pb.RegisterRequest(provider=_spec(
            "meta", "http://169.254.169.254/latest", api_key=REGISTER_SECRET)),
            metadata=admin, timeout=10))
        await seen.call(lambda: stub.Register(pb.RegisterRequest(provider=_spec(
            "thief", registered.base_url, api_key_env="CORP_API_KEY")), metadata=admin,
            timeout=10))
        # Wrong and missing caller keys.
        await seen.call(lambda: stub.ListProviders(
            pb.ListProvidersRequest(), metadata=(("authorization", f"Bearer {ADMIN_SECRET}x"),),
            timeout=10))
        await seen.call(lambda: stub.ListProviders(pb.ListProvidersRequest(), timeout=10))
        await seen.call(lambda: stub.ListProviders(pb.ListProvidersRequest(), metadata=admin,
                                                   timeout=10))
        await seen.call(lambda: stub.Route(pb.RouteRequest(
            routing=pb.RoutingOptions(model="reg/reg-1")), metadata=admin, timeout=10))
    return seen


async def test_secrets_never_leave_the_process(tmp_path: Path) -> None:
    # No key check in the fakes: they answer with the faults below, echoing the keys.
    corp = await OpenAIFake().start()
    corp.down(Fault(status=401, code="invalid_api_key",
                    message=f"Incorrect API key provided: {ENV_SECRET}"))
    registered = await OpenAIFake().start()
    registered.down(Fault(status=500, body=f"<html>upstream saw {REGISTER_SECRET}</html>"))
    metrics_port, port = _free_port(), _free_port()
    config = tmp_path / "router.toml"
    config.write_text(CONFIG.format(metrics_port=metrics_port, corp_url=corp.base_url))
    registry_file = tmp_path / "registry.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROVIDER_ROUTER_") and not k.endswith(("_API_KEY", "_HOST"))}
    env.update({"CORP_API_KEY": ENV_SECRET, "PROVIDER_ROUTER_ADMIN_KEYS": ADMIN_SECRET,
                "PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(registry_file),
                # A proxy password in the environment (the loopback upstreams bypass it).
                "HTTP_PROXY": f"http://user:{PROXY_SECRET}@127.0.0.1:9",
                "NO_PROXY": "127.0.0.1"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", "serve", "--config", str(config),
        "--listen", f"127.0.0.1:{port}", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_serving(f"127.0.0.1:{port}", 30)
        seen = await _exercise(f"127.0.0.1:{port}", corp, registered)
        scrape = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                           timeout=10).read().decode())
        stored = registry_file.read_text()
        mode = stat.S_IMODE(registry_file.stat().st_mode)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        await corp.close()
        await registered.close()
    logs = out.decode() + err.decode()

    # The scenario really ran: the upstreams got the keys and failed the calls, and the
    # logs are at debug level and talk about those failures.
    assert corp.requests and registered.requests
    assert any(r.headers.get("authorization") == f"Bearer {ENV_SECRET}" for r in corp.requests)
    assert any(r.headers.get("authorization") == f"Bearer {REGISTER_SECRET}"
               for r in registered.requests)
    assert grpc.StatusCode.INTERNAL in seen.codes  # PROVIDER_AUTH_FAILED
    assert grpc.StatusCode.INVALID_ARGUMENT in seen.codes
    assert grpc.StatusCode.UNAUTHENTICATED in seen.codes
    assert " DEBUG " in logs or '"level": "DEBUG"' in logs, logs[-2000:]
    assert "Incorrect API key provided: [redacted]" in logs
    assert "upstream saw [redacted]" in logs
    assert "provider_router_requests_total" in scrape or "provider_router_" in scrape

    for secret in SECRETS:
        for text in seen.texts:
            assert secret not in text, f"a response or error detail holds a secret: {text}"
        assert secret not in logs, "a log line holds a secret"
        assert secret not in scrape, "the metrics scrape holds a secret"
    # The registry file: never the environment's key nor the admin key. The write-only
    # Register key is kept there by design (nothing else could bring it back after a
    # restart), in a file only the server's user can read.
    assert ENV_SECRET not in stored and ADMIN_SECRET not in stored
    assert PROXY_SECRET not in stored
    assert REGISTER_SECRET in stored
    assert mode == 0o600
