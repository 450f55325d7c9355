"""Which environment variables a runtime registration may use as its API key.

Register is an admin call, but an admin key is not the host: without a policy, a caller could
register a provider at its own URL with `api_key_env = "OPENAI_API_KEY"` (or any other secret
in the server's environment) and receive it with the first request. So a runtime
registration may name `api_key_env` only when both hold:

- the name matches one of `[auth] register_key_envs` (globs; default `["*_API_KEY"]`), and
- when a provider from the config file (or auto-registered from the environment) already uses
  that variable, the new provider sends it to the same base URL (same scheme, host, port).

Keys given write-only in the Register call itself are always allowed: they are the caller's.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from urllib.parse import urlsplit

from provider_router.connectors.factory import DEFAULT_BASE_URLS
from provider_router.domain import ProviderSpec
from provider_router.errors import FieldViolation


def _origin(spec: ProviderSpec) -> tuple[str, str, int | None]:
    url = urlsplit(spec.base_url or DEFAULT_BASE_URLS.get(spec.kind, ""))
    return url.scheme, (url.hostname or "").lower(), url.port


class KeyReferencePolicy:
    """Checks runtime registrations' `api_key_env` against the allowlist and trusted owners."""

    def __init__(self, allowed: Iterable[str], trusted: Iterable[ProviderSpec]) -> None:
        self._allowed = tuple(allowed)
        # Variable → the origins that config-defined providers send it to.
        self._owners: dict[str, set[tuple[str, str, int | None]]] = {}
        for spec in trusted:
            if spec.api_key_env:
                self._owners.setdefault(spec.api_key_env, set()).add(_origin(spec))

    def violations(self, spec: ProviderSpec) -> tuple[FieldViolation, ...]:
        """Why this runtime registration may not use its api_key_env (empty when it may)."""
        name = spec.api_key_env
        if not name:
            return ()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self._allowed):
            return (FieldViolation("provider.api_key_env",
                                   f"{name} is not in [auth] register_key_envs "
                                   f"({', '.join(self._allowed) or 'empty'}); pass api_key "
                                   "instead"),)
        owners = self._owners.get(name)
        if owners is not None and _origin(spec) not in owners:
            return (FieldViolation("provider.api_key_env",
                                   f"{name} belongs to a configured provider at another base "
                                   "URL; pass api_key instead"),)
        return ()
