"""The provider client over TLS, as every hosted provider is reached: a real TLS server with
a certificate from a throwaway CA (trustme), trusted the standard way (SSL_CERT_FILE)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from provider_router.connectors.errormap import table_mapper
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.timing import PhaseTimeouts
from provider_router.errors import ProviderConnectionError
from provider_router.resilience.deadline import Deadline

BODY = b'{"ok":true}'


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def tls_server(ca: trustme.CA, *names: str) -> tuple[asyncio.Server, int, list[str]]:
    """A TLS server with a certificate for `names`; records each request's Host header."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return await http_server(context)


async def http_server(context: ssl.SSLContext | None) -> tuple[asyncio.Server, int, list[str]]:
    """An HTTP/1.1 server (over TLS with `context`) answering BODY; records each Host header."""
    hosts: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                hosts.extend(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                             if line.lower().startswith("host:"))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1], hosts


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient("tls", PhaseTimeouts(5, 5, 5, 5), table_mapper(()))
    yield http
    await http.aclose()


def trust(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


async def test_https_call_verifies_and_reuses_the_connection(
        ca: trustme.CA, client: HttpClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trust(ca, tmp_path, monkeypatch)
    server, port, hosts = await tls_server(ca, "127.0.0.1")
    url = f"https://127.0.0.1:{port}/v1/chat"
    for _ in range(2):
        assert await client.request_json(HttpCall("POST", url, {}, {"q": 1}),
                                         Deadline.after(5)) == {"ok": True}
    assert hosts == [f"127.0.0.1:{port}"] * 2
    server.close()


async def test_untrusted_certificate_is_refused(ca: trustme.CA, client: HttpClient) -> None:
    # No SSL_CERT_FILE: the throwaway CA is not in the system trust store.
    server, port, _ = await tls_server(ca, "127.0.0.1")
    with pytest.raises(ProviderConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await client.request_json(HttpCall("GET", f"https://127.0.0.1:{port}/v1/models"),
                                  Deadline.after(5))
    server.close()


async def test_certificate_for_another_host_is_refused(
        ca: trustme.CA, client: HttpClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trust(ca, tmp_path, monkeypatch)
    server, port, _ = await tls_server(ca, "api.example.org")
    with pytest.raises(ProviderConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await client.request_json(HttpCall("GET", f"https://127.0.0.1:{port}/v1/models"),
                                  Deadline.after(5))
    server.close()
