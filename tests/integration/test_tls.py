"""TLS and mTLS on the real server, with throwaway CAs (trustme): calls that work, clients
that are refused, a certificate renewed on disk without a restart, the health-only port, and
the CLI and Python clients' TLS options."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc
from provider_router_client import AsyncRouterClient, RouterClient, text_request
from tests.integration.conftest import RunningRouter, StartRouter

SERVING = health_pb2.HealthCheckResponse.SERVING


class Pki:
    """A server certificate from one CA and a client certificate from another, as files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.server_ca.cert_pem.write_to_path(str(root / "server-ca.pem"))
        self.client_ca.cert_pem.write_to_path(str(root / "client-ca.pem"))
        self.write_server_cert(self.server_ca)
        client = self.client_ca.issue_cert("client.example")
        client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
        client.private_key_pem.write_to_path(str(root / "client.key"))

    def write_server_cert(self, ca: trustme.CA) -> None:
        """A certificate for 127.0.0.1 and localhost, replaced the way rotations do it
        (written beside, then renamed over)."""
        cert = ca.issue_cert("127.0.0.1", "localhost")
        for name, blob in (("server.pem", b"".join(p.bytes() for p in cert.cert_chain_pems)),
                           ("server.key", cert.private_key_pem.bytes())):
            temporary = self.root / f".{name}.new"
            temporary.write_bytes(blob)
            os.replace(temporary, self.root / name)

    def path(self, name: str) -> str:
        """The path of one of the files."""
        return str(self.root / name)

    def config(self, *, mutual: bool = False, extra: str = "") -> str:
        """A [server] table serving TLS (mTLS with `mutual`)."""
        lines = ["[server]", f'tls_cert_file = "{self.path("server.pem")}"',
                 f'tls_key_file = "{self.path("server.key")}"']
        if mutual:
            lines.append(f'tls_client_ca_file = "{self.path("client-ca.pem")}"')
        return "\n".join(lines) + "\n" + extra


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    root = tmp_path / "pki"
    root.mkdir()
    return Pki(root)


def credentials(pki: Pki, ca: str = "server-ca.pem", client: bool = False
                ) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(pki.path(ca)).read_bytes(),
        private_key=Path(pki.path("client.key")).read_bytes() if client else None,
        certificate_chain=Path(pki.path("client.pem")).read_bytes() if client else None)


async def list_providers(router: RunningRouter, creds: grpc.ChannelCredentials | None
                         ) -> pb.ListProvidersResponse:
    """One call on a fresh channel (a fresh TLS handshake)."""
    channel = (grpc.aio.secure_channel(router.target, creds) if creds is not None
               else grpc.aio.insecure_channel(router.target))
    async with channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        return await stub.ListProviders(pb.ListProvidersRequest(), timeout=10)


async def refused(router: RunningRouter, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await list_providers(router, creds)
    return info.value.code()


async def test_tls_call_works_and_plaintext_is_refused(start_router: StartRouter,
                                                       pki: Pki) -> None:
    router = await start_router(pki.config())
    answer = await list_providers(router, credentials(pki))
    assert [p.spec.name for p in answer.providers] == ["mock"]
    assert await refused(router, None) is grpc.StatusCode.UNAVAILABLE


async def test_client_trusting_another_ca_is_refused(start_router: StartRouter,
                                                     pki: Pki) -> None:
    router = await start_router(pki.config())
    # The client CA did not sign the server's certificate: the handshake fails.
    assert await refused(router, credentials(pki, ca="client-ca.pem")) is (
        grpc.StatusCode.UNAVAILABLE)


async def test_mtls_requires_a_client_certificate_from_the_client_ca(
        start_router: StartRouter, pki: Pki, tmp_path: Path) -> None:
    router = await start_router(pki.config(mutual=True))
    answer = await list_providers(router, credentials(pki, client=True))
    assert answer.providers
    assert await refused(router, credentials(pki)) is grpc.StatusCode.UNAVAILABLE
    # A certificate signed by a CA the server does not trust for clients is refused too.
    stranger = trustme.CA().issue_cert("client.example")
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.server_ca.cert_pem.bytes(),
        private_key=stranger.private_key_pem.bytes(),
        certificate_chain=stranger.cert_chain_pems[0].bytes())
    assert await refused(router, creds) is grpc.StatusCode.UNAVAILABLE


async def test_renewed_certificate_is_served_without_restart(start_router: StartRouter,
                                                             pki: Pki) -> None:
    router = await start_router(pki.config(extra="tls_reload_interval = 0.1\n"))
    assert (await list_providers(router, credentials(pki))).providers
    assert router.app.tls is not None
    # Renew from a new CA: only clients trusting it may connect once the change is seen.
    renewed = trustme.CA()
    renewed.cert_pem.write_to_path(pki.path("renewed-ca.pem"))
    pki.write_server_cert(renewed)
    for _ in range(300):  # the watcher looks every 0.1 s; a loaded machine may take longer
        if router.app.tls.reloads:
            break
        await asyncio.sleep(0.05)
    assert router.app.tls.reloads == 1
    assert (await list_providers(router, credentials(pki, ca="renewed-ca.pem"))).providers
    assert await refused(router, credentials(pki)) is grpc.StatusCode.UNAVAILABLE


async def test_half_written_rotation_keeps_the_current_certificate(
        start_router: StartRouter, pki: Pki) -> None:
    router = await start_router(pki.config(extra="tls_reload_interval = 0\n"))
    assert router.app.tls is not None
    # A new certificate whose key has not arrived yet: the pair does not match.
    other = trustme.CA().issue_cert("127.0.0.1")
    other.cert_chain_pems[0].write_to_path(pki.path("server.pem"))
    assert await router.app.tls.check() is False
    assert (await list_providers(router, credentials(pki))).providers
    # Then the key lands: the next look serves the new pair.
    other.private_key_pem.write_to_path(pki.path("server.key"))
    assert await router.app.tls.check() is True
    assert await router.app.tls.check() is False  # nothing changed since
    registry = router.app.metrics.registry
    for result, count in (("rejected", 1.0), ("loaded", 1.0)):
        assert registry.get_sample_value("provider_router_tls_reloads_total",
                                         {"result": result}) == count


async def test_health_only_port_is_plaintext_and_serves_nothing_else(
        start_router: StartRouter, pki: Pki) -> None:
    router = await start_router(pki.config(mutual=True, extra='health_listen = "127.0.0.1:0"\n'))
    assert router.app.health_port > 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{router.app.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == SERVING
        service = await health.Check(
            health_pb2.HealthCheckRequest(service="provider_router.v1.RouterService"),
            timeout=10)
        assert service.status == SERVING
        stub = router_pb2_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        # It reports what the main port reports, a drain included.
        await router.app.health.draining()
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_python_clients_take_tls_files(start_router: StartRouter, pki: Pki) -> None:
    router = await start_router(pki.config(mutual=True))
    async with AsyncRouterClient(router.target, ca_file=pki.path("server-ca.pem"),
                                 cert_file=pki.path("client.pem"),
                                 key_file=pki.path("client.key")) as client:
        answer = await client.chat(text_request("over mTLS"), timeout=10)
        assert answer.provider == "mock"

    def blocking() -> int:
        with RouterClient(router.target, ca_file=pki.path("server-ca.pem"),
                          cert_file=pki.path("client.pem"),
                          key_file=pki.path("client.key")) as client:
            return client.health(timeout=10)

    assert await asyncio.to_thread(blocking) == SERVING


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_client_commands_take_tls_flags(start_router: StartRouter, pki: Pki) -> None:
    router = await start_router(pki.config(mutual=True))
    tls = ("--ca", pki.path("server-ca.pem"), "--cert", pki.path("client.pem"),
           "--key", pki.path("client.key"))
    code, out, err = await _cli("health", "--target", router.target, *tls)
    assert (code, out.strip()) == (0, "status: SERVING"), err
    code, out, err = await _cli("chat", "hello", "--no-stream", "--target", router.target, *tls)
    assert code == 0, err
    # Without the client certificate the call fails (exit 1, the status printed).
    code, _, err = await _cli("providers", "--target", router.target,
                              "--ca", pki.path("server-ca.pem"))
    assert code == 1
    assert "UNAVAILABLE" in err
    # Half a pair, or a missing file, is a usage mistake: exit 2 naming the flag.
    code, _, err = await _cli("providers", "--target", router.target,
                              "--cert", pki.path("client.pem"))
    assert code == 2 and "--key" in err
    code, _, err = await _cli("providers", "--target", router.target, "--ca", "/nonexistent.pem")
    assert code == 2 and "--ca" in err
