"""Where runtime-registered providers may send requests: the SSRF guard.

Register is an admin call, but an admin key is not the network: without a guard, a caller
could point a provider at the cloud metadata service (169.254.169.254, which hands out the
node's credentials), at the cluster's own services, or at anything else only the router can
reach, and read the answers through error messages or streams. So a provider registered at
runtime may only reach:

- http or https URLs;
- public (globally routed) addresses, and loopback unless `[auth] allow_loopback_upstream`
  is false (a local Ollama on the same host keeps working);
- private, shared, link-local or other special ranges only when listed in
  `[auth] allowed_upstream_networks` (CIDRs, e.g. a vLLM service in 10.0.0.0/8);
- never a cloud metadata endpoint, whatever is listed.

The host is resolved at Register and every address is checked; the same check runs again on
every new connection (DNS rebinding: a name that resolved to a public address at Register
may resolve to 169.254.169.254 a minute later). Providers from the config file and the
environment are the operator's own and are not guarded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from provider_router.domain import ProviderSpec

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance metadata services: never a provider, whatever the allowlist says.
METADATA_ADDRESSES: frozenset[IpAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",  # AWS ECS task credentials
    "169.254.169.123",  # AWS time sync
    "100.100.100.200",  # Alibaba Cloud
    "fd00:ec2::254",  # AWS over IPv6
    "fd00:ec2::23",
))
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com",
    "instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com",
})
_SCHEMES = ("http", "https")
_RESOLVE_TIMEOUT_S = 5.0


class EgressRefused(OSError):
    """A connection to an address the guard refuses (raised at connect time)."""


def parse_networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    """CIDRs as networks; ValueError naming the bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR ({exc})") from None
    return tuple(networks)


def _plain(address: IpAddress) -> IpAddress:
    """An IPv4-mapped IPv6 address (::ffff:10.0.0.1) as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _kind(address: IpAddress) -> str:
    """What kind of non-public address this is, in words for the error message."""
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address)
                              and address in ipaddress.ip_network("100.64.0.0/10")):
        return "private"
    return "reserved"


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Which addresses a runtime-registered provider may connect to."""

    allowed_networks: tuple[IpNetwork, ...] = ()
    allow_loopback: bool = True

    def refused_address(self, raw: str) -> str:
        """Why the address may not be reached ("" when it may)."""
        address = _plain(ipaddress.ip_address(raw.split("%", 1)[0]))
        if address in METADATA_ADDRESSES:
            return f"{address} is a cloud metadata endpoint"
        if any(address in network for network in self.allowed_networks):
            return ""
        if address.is_loopback:
            return "" if self.allow_loopback else (
                f"{address} is loopback ([auth] allow_loopback_upstream is false)")
        if address.is_global and not address.is_multicast:
            return ""
        return (f"{address} is a {_kind(address)} address, not in [auth] "
                "allowed_upstream_networks")

    def refused_url(self, url: str) -> str:
        """Why the URL may not be used, before any lookup ("" when it may so far)."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".").lower()
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            return f"is not a valid URL ({exc})"
        if parts.scheme.lower() not in _SCHEMES:
            return f"must be an http or https URL, not {parts.scheme or 'a relative one'!r}"
        if not host:
            return "must name a host"
        return self.refused_host(host)

    def refused_host(self, host: str) -> str:
        """Why the host may not be reached, judged by its name or literal address alone."""
        host = host.strip("[]").rstrip(".").lower()
        if host in METADATA_NAMES:
            return f"{host} is a cloud metadata endpoint"
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return ""
        return self.refused_address(host)

    def check_host(self, host: str) -> None:
        """EgressRefused when the host alone is refused (a connection through a proxy)."""
        reason = self.refused_host(host)
        if reason:
            raise EgressRefused(f"refused to connect to {host}: {reason}")

    async def refused(self, url: str, *, resolve: bool = True) -> str:
        """Why the URL may not be used, after resolving its host ("" when it may). Without
        `resolve` (an origin reached through a proxy, which does the lookup) only the URL
        itself is judged."""
        reason = self.refused_url(url)
        if reason or not resolve:
            return reason
        parts = urlsplit(url)
        host = parts.hostname or ""
        loop = asyncio.get_running_loop()
        try:
            # getaddrinfo runs in the loop's thread pool, never on the loop itself.
            async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
                infos = await loop.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            return f"host {host} does not resolve ({exc.strerror or type(exc).__name__})"
        for *_, sockaddr in infos:
            reason = self.refused_address(str(sockaddr[0]))
            if reason:
                return f"host {host} resolved, but {reason}"
        return ""

    def check_addresses(self, host: str, addresses: Sequence[tuple[int, str, int]]
                        ) -> list[tuple[int, str, int]]:
        """The addresses that may be connected to; EgressRefused when none may."""
        allowed = [a for a in addresses if not self.refused_address(a[1])]
        if not allowed:
            reason = self.refused_address(addresses[0][1]) if addresses else "no address"
            raise EgressRefused(f"refused to connect to {host}: {reason}")
        return allowed


@dataclass(frozen=True, slots=True)
class EgressGuard:
    """The policy, and the providers it does not apply to (the operator's own)."""

    policy: EgressPolicy
    # Providers by name as the config file and the environment define them.
    trusted: Mapping[str, ProviderSpec] = field(default_factory=dict)

    def policy_for(self, spec: ProviderSpec) -> EgressPolicy | None:
        """The policy for a provider's connections; None for an operator-defined one."""
        trusted = self.trusted.get(spec.name)
        return None if trusted is not None and trusted == spec else self.policy
