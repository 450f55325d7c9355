"""The SSRF guard's address and URL rules, and its check on every new connection."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from provider_router.connectors.egress import (
    EgressGuard,
    EgressPolicy,
    EgressRefused,
    parse_networks,
)
from provider_router.connectors.errormap import table_mapper
from provider_router.connectors.http import HttpCall, HttpClient
from provider_router.connectors.timing import PhaseTimeouts
from provider_router.domain import ProviderKind, ProviderSpec
from provider_router.errors import ProviderUnavailableError
from provider_router.resilience.deadline import Deadline

DEFAULT = EgressPolicy()
PRIVATE_ALLOWED = EgressPolicy(parse_networks(["10.0.0.0/8", "fd12::/16", "169.254.0.0/16"]))
NO_LOOPBACK = EgressPolicy(allow_loopback=False)


@pytest.mark.parametrize(("policy", "address", "refusal"), [
    (DEFAULT, "8.8.8.8", ""),
    (DEFAULT, "2606:4700:4700::1111", ""),
    (DEFAULT, "127.0.0.1", ""),
    (DEFAULT, "::1", ""),
    (NO_LOOPBACK, "127.0.0.1", "loopback"),
    (DEFAULT, "169.254.169.254", "cloud metadata"),
    (PRIVATE_ALLOWED, "169.254.169.254", "cloud metadata"),  # never, whatever is listed
    (DEFAULT, "fd00:ec2::254", "cloud metadata"),
    (DEFAULT, "169.254.10.1", "link-local"),
    (PRIVATE_ALLOWED, "169.254.10.1", ""),
    (DEFAULT, "fe80::1", "link-local"),
    (DEFAULT, "10.1.2.3", "private"),
    (PRIVATE_ALLOWED, "10.1.2.3", ""),
    (DEFAULT, "172.16.0.1", "private"),
    (DEFAULT, "192.168.1.1", "private"),
    (DEFAULT, "100.64.0.1", "private"),
    (DEFAULT, "fc00::1", "private"),
    (PRIVATE_ALLOWED, "fd12::1", ""),
    (DEFAULT, "::ffff:10.0.0.1", "private"),  # IPv4-mapped: the IPv4 address it reaches
    (DEFAULT, "::ffff:169.254.169.254", "cloud metadata"),
    (DEFAULT, "0.0.0.0", "unspecified"),
    (DEFAULT, "224.0.0.1", "multicast"),
    (DEFAULT, "192.0.2.1", "not in [auth] allowed_upstream_networks"),  # documentation range
])
def test_addresses(policy: EgressPolicy, address: str, refusal: str) -> None:
    reason = policy.refused_address(address)
    assert (refusal in reason) if refusal else reason == ""
    assert bool(reason) == bool(refusal)


@pytest.mark.parametrize(("url", "refusal"), [
    ("https://api.openai.com/v1", ""),
    ("http://127.0.0.1:11434", ""),
    ("ftp://example.com/", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http or https"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://METADATA./", "cloud metadata"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://[fe80::1%25eth0]:8080/", "link-local"),
    ("http://10.0.0.5:8000/v1", "private"),
    ("http://example.com:99999/", "not a valid URL"),
])
def test_urls_before_lookup(url: str, refusal: str) -> None:
    reason = DEFAULT.refused_url(url)
    assert (refusal in reason) if refusal else reason == ""


async def test_names_are_resolved_and_every_address_checked() -> None:
    assert await DEFAULT.refused("http://localhost:11434") == ""
    reason = await NO_LOOPBACK.refused("http://localhost:11434")
    assert reason.startswith("host localhost resolved, but ") and "is loopback" in reason
    assert "does not resolve" in await DEFAULT.refused("http://no-such-host.invalid/")


def test_only_runtime_registrations_are_guarded() -> None:
    configured = ProviderSpec("vllm", ProviderKind.OPENAI_COMPATIBLE, base_url="http://10.0.0.5")
    guard = EgressGuard(DEFAULT, {"vllm": configured})
    assert guard.policy_for(configured) is None
    # The same name registered at runtime with another URL is a stranger's spec.
    replaced = ProviderSpec("vllm", ProviderKind.OPENAI_COMPATIBLE, base_url="http://10.0.0.6")
    assert guard.policy_for(replaced) is DEFAULT
    assert guard.policy_for(ProviderSpec("new", ProviderKind.OLLAMA)) is DEFAULT


def test_connect_keeps_allowed_addresses_and_refuses_when_none_is() -> None:
    addresses = [(socket.AF_INET, "10.0.0.1", 80), (socket.AF_INET, "8.8.8.8", 80)]
    assert DEFAULT.check_addresses("mixed.example", addresses) == addresses[1:]
    with pytest.raises(EgressRefused, match=r"169\.254\.169\.254 is a cloud metadata endpoint"):
        DEFAULT.check_addresses("evil.example", [(socket.AF_INET, "169.254.169.254", 80)])


async def test_every_new_connection_is_checked_dns_rebinding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that resolved to an allowed address may later resolve to a refused one: the
    check runs on the addresses each connection dials, not only at Register."""
    loop = asyncio.get_running_loop()
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers = {"rebind.example": "127.0.0.1"}

    async def lookup(host: str, port: int, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    client = HttpClient("p", PhaseTimeouts(5, 5, 5, 5), table_mapper(()), egress=DEFAULT)
    call = HttpCall("GET", f"http://rebind.example:{port}/v1/models")
    try:
        assert await client.request_json(call, Deadline.after(5)) == {}
        answers["rebind.example"] = "169.254.169.254"
        # A fresh client: a fresh lookup (the cache would otherwise hold the first answer
        # for its ttl; a rebinding attacker waits that out).
        await client.aclose()
        client = HttpClient("p", PhaseTimeouts(5, 5, 5, 5), table_mapper(()), egress=DEFAULT)
        with pytest.raises(ProviderUnavailableError, match="cloud metadata endpoint"):
            await client.request_json(call, Deadline.after(5))
        assert accepted == [1]  # the refused address was never dialled
    finally:
        await client.aclose()
        server.close()
