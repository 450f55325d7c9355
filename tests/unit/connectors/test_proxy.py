"""The provider client through an outbound proxy: variables parsed as curl and requests do,
CONNECT tunnels with TLS to the origin (a real TLS upstream from a throwaway CA), plain http
in absolute form, credentials sent but never shown, NO_PROXY bypass."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from provider_router.config import load_config
from provider_router.connectors.errormap import table_mapper
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.proxy import BadProxySetting, ProxySettings
from provider_router.connectors.timing import PhaseTimeouts
from provider_router.errors import ConfigError, ProviderConnectionError
from provider_router.resilience.deadline import Deadline
from tests.fakes.proxy import ForwardProxy
from tests.unit.connectors.test_h1_tls import http_server, tls_server, trust

PASSWORD = "pr0xy-S3CRET-pass"
BASIC = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    running = await ForwardProxy(authorization=BASIC).start()
    yield running
    await running.close()


def client(env: dict[str, str]) -> HttpClient:
    return HttpClient("p", PhaseTimeouts(5, 5, 5, 5), table_mapper(()),
                      proxies=ProxySettings.from_env(env))


def with_credentials(proxy: ForwardProxy, password: str = PASSWORD) -> str:
    return f"http://alice:{password}@127.0.0.1:{proxy.port}"


# --- the variables ----------------------------------------------------------------------

def test_no_variables_no_proxy() -> None:
    assert ProxySettings.from_env({}) is None
    assert ProxySettings.from_env({"NO_PROXY": "example.com"}) is None


def test_lower_case_wins_and_all_proxy_is_the_fallback() -> None:
    settings = ProxySettings.from_env({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2",
                                       "ALL_PROXY": "fallback:3"})
    assert settings is not None and settings.https is not None and settings.http is not None
    assert (settings.https.host, settings.https.port) == ("low", 1)
    assert (settings.http.host, settings.http.port) == ("fallback", 3)  # scheme-less = http


@pytest.mark.parametrize(("no_proxy", "host", "port", "proxied"), [
    ("example.com", "example.com", 443, False),
    ("example.com", "api.example.com", 443, False),
    (".example.com", "api.example.com", 443, False),
    ("example.com", "badexample.com", 443, True),
    ("*", "anything.org", 443, False),
    ("10.0.0.0/8, localhost", "10.2.3.4", 443, False),
    ("10.0.0.0/8", "11.0.0.1", 443, True),
    ("192.168.1.5", "192.168.1.5", 443, False),
    ("api.example.com:8443", "api.example.com", 8443, False),
    ("api.example.com:8443", "api.example.com", 443, True),
    ("[::1]:8080", "::1", 8080, False),
    ("::1", "[::1]", 443, False),
    ("", "example.com", 443, True),
])
def test_no_proxy_rules(no_proxy: str, host: str, port: int, proxied: bool) -> None:
    settings = ProxySettings.from_env({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})
    assert settings is not None
    assert (settings.for_origin("https", host, port) is not None) is proxied


def test_credentials_never_in_a_repr_and_bad_urls_are_config_errors() -> None:
    settings = ProxySettings.from_env({"HTTPS_PROXY": f"http://alice:{PASSWORD}@proxy:3128"})
    assert settings is not None and settings.https is not None
    assert settings.https.authorization == BASIC
    assert PASSWORD not in repr(settings) and "alice" not in repr(settings)
    with pytest.raises(BadProxySetting, match="http://"):
        ProxySettings.from_env({"HTTPS_PROXY": "socks5://proxy:1080"})
    with pytest.raises(ConfigError) as info:
        load_config(None, {"https_proxy": f"https://alice:{PASSWORD}@proxy:3128"})
    assert info.value.key == "https_proxy"
    assert PASSWORD not in info.value.message


# --- through a real proxy ---------------------------------------------------------------

async def test_https_goes_through_a_connect_tunnel_verifying_the_origin(
        ca: trustme.CA, proxy: ForwardProxy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trust(ca, tmp_path, monkeypatch)
    # The certificate names "localhost" only: the proxy is reached as 127.0.0.1, so a
    # check against the proxy's name would fail.
    server, port, hosts = await tls_server(ca, "localhost")
    http = client({"HTTPS_PROXY": with_credentials(proxy)})
    try:
        for _ in range(2):
            answer = await http.request_json(
                HttpCall("POST", f"https://localhost:{port}/v1/chat", {}, {"q": 1}),
                Deadline.after(5))
            assert answer == {"ok": True}
    finally:
        await http.aclose()
        server.close()
    assert proxy.request_lines == [f"CONNECT localhost:{port} HTTP/1.1"]  # kept alive
    assert proxy.proxy_authorizations == [BASIC]
    assert hosts == [f"localhost:{port}"] * 2


async def test_an_origin_certificate_for_another_name_is_refused_through_the_tunnel(
        ca: trustme.CA, proxy: ForwardProxy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    trust(ca, tmp_path, monkeypatch)
    server, port, _ = await tls_server(ca, "api.example.org")
    http = client({"https_proxy": with_credentials(proxy)})
    try:
        with pytest.raises(ProviderConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.request_json(HttpCall("GET", f"https://localhost:{port}/v1/models"),
                                    Deadline.after(5))
    finally:
        await http.aclose()
        server.close()


async def test_a_refused_connect_is_a_connection_error_without_secrets(
        ca: trustme.CA, proxy: ForwardProxy) -> None:
    http = client({"HTTPS_PROXY": with_credentials(proxy, "wrong-password-123")})
    try:
        with pytest.raises(ProviderConnectionError) as info:
            await http.request_json(HttpCall("GET", "https://api.example.org/v1/models"),
                                    Deadline.after(5))
    finally:
        await http.aclose()
    message = info.value.message
    assert f"proxy 127.0.0.1:{proxy.port} refused CONNECT to api.example.org:443" in message
    assert "407 Proxy Authentication Required" in message
    assert "wrong-password" not in message and "alice" not in message


async def test_an_unreachable_proxy_is_a_connection_error() -> None:
    http = client({"HTTPS_PROXY": "http://127.0.0.1:9"})
    try:
        with pytest.raises(ProviderConnectionError, match=r"cannot connect to proxy 127\.0\.0\.1:9"):
            await http.request_json(HttpCall("GET", "https://api.example.org/v1/models"),
                                    Deadline.after(5))
    finally:
        await http.aclose()


async def test_plain_http_is_sent_in_absolute_form(proxy: ForwardProxy) -> None:
    upstream, port, hosts = await http_server(None)
    http = client({"HTTP_PROXY": with_credentials(proxy)})
    try:
        assert await http.request_json(HttpCall("GET", f"http://127.0.0.1:{port}/v1/models"),
                                       Deadline.after(5)) == {"ok": True}
    finally:
        await http.aclose()
        upstream.close()
    assert proxy.request_lines == [f"GET http://127.0.0.1:{port}/v1/models HTTP/1.1"]
    assert proxy.proxy_authorizations == [BASIC]
    assert hosts == [f"127.0.0.1:{port}"]


async def test_no_proxy_bypasses_the_proxy(proxy: ForwardProxy) -> None:
    upstream, port, hosts = await http_server(None)
    http = client({"HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.0/8"})
    try:
        assert await http.request_json(HttpCall("GET", f"http://127.0.0.1:{port}/v1/models"),
                                       Deadline.after(5)) == {"ok": True}
    finally:
        await http.aclose()
        upstream.close()
    assert proxy.request_lines == []
    assert hosts == [f"127.0.0.1:{port}"]
