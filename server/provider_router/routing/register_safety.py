"""What a runtime Register may not do, beyond a well-formed spec (validation.py) and the key
rules (key_policy.py): reach a network the router must not call for strangers (the SSRF
guard in connectors/egress.py), or run a program on the router's host.

Config-file and environment providers are the operator's own and never pass through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provider_router.connectors.egress import EgressPolicy
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

    async def violations(self, spec: ProviderSpec) -> tuple[FieldViolation, ...]:
        """Why this runtime registration is refused (empty when it is not)."""
        if spec.kind is ProviderKind.COMMAND and not self.allow_commands:
            return (FieldViolation("provider.kind", "command providers run a program on the "
                                   "router's host and may only come from the config file "
                                   "(or set [auth] register_command_providers = true)"),)
        if spec.kind in _NO_URL:
            return ()
        reason = await self.egress.refused(base_url(spec))
        return (FieldViolation("provider.base_url", reason),) if reason else ()
