"""Register's SSRF guard end to end: refused URLs name `provider.base_url`, allowed private
networks come from config, loopback works by default, and the check runs again when a
registered provider connects (DNS rebinding, registrations restored after a restart)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import grpc
import pytest

from provider_router.v1 import router_pb2 as pb
from tests.fakes.harness import KEY
from tests.integration.conftest import Fakes, StartRouter
from tests.integration.details import violations


def _spec(base_url: str, name: str = "upstream", **kwargs: Any) -> pb.ProviderSpec:
    return pb.ProviderSpec(name=name, kind=pb.PROVIDER_KIND_OPENAI_COMPATIBLE,
                           base_url=base_url, models=[pb.ModelSpec(name="u-1")], **kwargs)


async def _refusal(stub: Any, spec: pb.ProviderSpec, validate_only: bool = False) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Register(pb.RegisterRequest(provider=spec, validate_only=validate_only),
                            timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return violations(info.value)["provider.base_url"]


@pytest.mark.parametrize(("base_url", "says"), [
    ("http://169.254.169.254/latest/meta-data", "cloud metadata endpoint"),
    ("http://metadata.google.internal/computeMetadata/v1", "cloud metadata endpoint"),
    ("http://[fd00:ec2::254]/", "cloud metadata endpoint"),
    ("http://169.254.1.1:8080/v1", "link-local"),
    ("http://10.0.0.5:8000/v1", "private"),
    ("http://192.168.1.20/v1", "private"),
    ("http://100.64.0.9/v1", "private"),
    ("http://[fc00::5]/v1", "private"),
    ("http://no-such-host.invalid/v1", "does not resolve"),
])
async def test_refused_upstreams_name_the_field(start_router: StartRouter, base_url: str,
                                                says: str) -> None:
    router = await start_router()
    assert says in await _refusal(router.stub, _spec(base_url))
    assert says in await _refusal(router.stub, _spec(base_url), validate_only=True)
    listing = await router.stub.ListProviders(pb.ListProvidersRequest(), timeout=5)
    assert [p.spec.name for p in listing.providers] == ["mock"]


async def test_only_http_and_https(start_router: StartRouter) -> None:
    router = await start_router()
    for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_x", "ftp://example.com/"):
        assert "http" in await _refusal(router.stub, _spec(url))


async def test_listed_private_networks_are_allowed(start_router: StartRouter) -> None:
    router = await start_router('[auth]\nallowed_upstream_networks = ["10.0.0.0/8"]\n')
    answer = await router.stub.Register(pb.RegisterRequest(
        provider=_spec("http://10.0.0.5:8000/v1"), validate_only=True), timeout=10)
    assert answer.created
    assert "private" in await _refusal(router.stub, _spec("http://192.168.1.20/v1"))
    # The metadata endpoint stays refused even when its range is listed.
    router = await start_router('[auth]\nallowed_upstream_networks = ["169.254.0.0/16"]\n')
    assert "metadata" in await _refusal(router.stub, _spec("http://169.254.169.254/"))


async def test_command_providers_cannot_be_registered_by_default(
        start_router: StartRouter) -> None:
    router = await start_router()
    spec = pb.ProviderSpec(name="agent", kind=pb.PROVIDER_KIND_COMMAND,
                           models=[pb.ModelSpec(name="a")],
                           command=pb.CommandOptions(argv=["/bin/sh", "-c", "id"]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Register(pb.RegisterRequest(provider=spec), timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "config file" in violations(info.value)["provider.kind"]


async def test_loopback_works_by_default_and_can_be_refused(start_router: StartRouter,
                                                            fakes: Fakes) -> None:
    fake = await fakes("openai")
    router = await start_router()
    await router.stub.Register(pb.RegisterRequest(provider=_spec(
        fake.base_url.replace("127.0.0.1", "localhost"), api_key=KEY)), timeout=10)
    answer = await router.stub.Chat(pb.ChatRequest(
        routing=pb.RoutingOptions(model="upstream/u-1"),
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")]), timeout=10)
    assert answer.provider == "upstream"
    strict = await start_router("[auth]\nallow_loopback_upstream = false\n")
    assert "loopback" in await _refusal(strict.stub, _spec(fake.base_url))


async def test_restored_registrations_are_checked_when_they_connect(
        start_router: StartRouter, fakes: Fakes, caplog: pytest.LogCaptureFixture) -> None:
    """A registration persisted while loopback was allowed is restored after a restart
    that refuses loopback: its connections are refused, not silently made."""
    fake = await fakes("openai")
    first = await start_router()
    await first.stub.Register(pb.RegisterRequest(provider=_spec(fake.base_url, api_key=KEY)),
                              timeout=10)
    await first.app.shutdown(drain_delay_s=0, grace_s=0)
    before = len(fake.requests)  # the first server's health probe
    second = await start_router("[auth]\nallow_loopback_upstream = false\n")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await second.stub.Chat(pb.ChatRequest(
            routing=pb.RoutingOptions(model="upstream/u-1"),
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")]), timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    # Its health probe was refused first, so routing already skips it, and the log says why.
    listing = await second.stub.ListProviders(pb.ListProvidersRequest(names=["upstream"]),
                                              timeout=5)
    assert listing.providers[0].status.health == pb.HEALTH_STATE_UNHEALTHY
    assert "refused to connect to 127.0.0.1: 127.0.0.1 is loopback" in caplog.text
    assert len(fake.requests) == before  # nothing more reached the upstream


async def test_dns_rebinding_is_refused_at_connect(start_router: StartRouter, fakes: Fakes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolves to an allowed address at Register and to the metadata service
    when the provider connects: the connection is refused."""
    fake = await fakes("openai")
    port = int(fake.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers = {"rebind.example": "127.0.0.1"}

    async def lookup(host: str, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    router = await start_router()
    await router.stub.Register(pb.RegisterRequest(provider=_spec(
        fake.base_url.replace("127.0.0.1", "rebind.example"), api_key=KEY)), timeout=10)
    answers["rebind.example"] = "169.254.169.254"
    await router.app.pool.aclose()  # a later connection (the kept one would be reused)
    before = len(fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.stub.Chat(pb.ChatRequest(
            routing=pb.RoutingOptions(model="upstream/u-1"),
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")]), timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "cloud metadata endpoint" in (info.value.details() or "")
    assert len(fake.requests) == before


async def test_config_file_providers_are_trusted(start_router: StartRouter,
                                                 fakes: Fakes) -> None:
    """The operator's own providers are not guarded: with loopback refused for runtime
    registrations, a config-file provider on loopback still serves, while the same upstream
    registered at runtime is refused."""
    fake = await fakes("openai")
    router = await start_router(f"""
[auth]
allow_loopback_upstream = false

[[providers]]
name = "local"
kind = "openai_compatible"
base_url = "{fake.base_url}"
api_key_env = "LOCAL_API_KEY"
models = ["l-1"]
""", env={"LOCAL_API_KEY": KEY})
    answer = await router.stub.Chat(pb.ChatRequest(
        routing=pb.RoutingOptions(model="local/l-1"),
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hi")]), timeout=10)
    assert answer.provider == "local"
    assert "loopback" in await _refusal(router.stub, _spec(fake.base_url, api_key=KEY))
