"""What a runtime Register may not do, beyond a well-formed spec (validation.py) and the key
rules (key_policy.py): reach a network the router must not call for strangers (the SSRF
guard in connectors/egress.py), or run a program on the router's host.

Config-file and environment providers are the operator's own and never pass through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from provider_router.connectors.egress import EgressPolicy
from provider_router.connectors.proxy import ProxySettings
from provider_router.connectors.settings import base_url
from provider_router.domain import ProviderKind, ProviderSpec
from provider_router.errors import FieldViolation

# Kinds that call no URL: the built-in mock, and command-line agents (a subprocess).
_NO_URL = frozenset({ProviderKind.MOCK, ProviderKind.COMMAND})


@dataclass(frozen=True, slots=True)
class RegisterSafety:
    """The egress policy for registered URLs, and whether commands may be registered."""

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    allow_commands: bool = False
    # Origins reached through a proxy are resolved by the proxy, not here.
    proxies: ProxySettings | None = None

    async def violations(self, spec: ProviderSpec) -> tuple[FieldViolation, ...]:
        """Why this runtime registration is refused (empty when it is not)."""
        if spec.kind is ProviderKind.COMMAND and not self.allow_commands:
            return (FieldViolation("provider.kind", "command providers run a program on the "
                                   "router's host and may only come from the config file "
                                   "(or set [auth] register_command_providers = true)"),)
        if spec.kind in _NO_URL:
            return ()
        url = base_url(spec)
        reason = await self.egress.refused(url, resolve=not self._proxied(url))
        return (FieldViolation("provider.base_url", reason),) if reason else ()

    def _proxied(self, url: str) -> bool:
        if self.proxies is None:
            return False
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return self.proxies.for_origin(parts.scheme, parts.hostname or "", port) is not None
