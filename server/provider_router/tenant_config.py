"""The `[[tenants]]` tables (in the config file and in `[auth] tenants_file`) → Tenants.

A tenant table:

    [[tenants]]
    name = "acme"
    key_sha256 = ["<64 hex digits: provider-router hash-key>"]
    models = ["gpt-4o*", "mock/*"]       # globs; absent = any model
    providers = ["openai*"]              # globs; absent = any provider
    rpm = 600                            # 0 / absent = unlimited
    tpm = 200000
    budget_usd_day = 10.0                # 0 / absent = no budget
    budget_usd_month = 200.0
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from provider_router.config_values import Table, number, string_list, text
from provider_router.errors import ConfigError
from provider_router.tenants import NAME_PATTERN, UNTENANTED, Tenant, is_key_hash


def _tenant(value: object, key: str) -> Tenant:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table with name, key_sha256, budgets, ...")
    t = Table(key, value)
    name = text(t, "name", "")
    if not NAME_PATTERN.match(name) or name == UNTENANTED:
        raise ConfigError(t.key("name"), name, "a name of letters, digits, '_', '.', '-' "
                                               "(at most 64, starting with a letter or digit)")
    hashes = tuple(h.lower() for h in string_list(t, "key_sha256"))
    for index, digest in enumerate(hashes):
        if not is_key_hash(digest):
            raise ConfigError(f"{t.key('key_sha256')}[{index}]", "<hidden>",
                              "a SHA-256 as 64 hex digits (provider-router hash-key)")
    tenant = Tenant(
        name=name, key_hashes=hashes,
        models=string_list(t, "models"), providers=string_list(t, "providers"),
        rpm=int(number(t, "rpm", 0, low=0, integer=True)),
        tpm=int(number(t, "tpm", 0, low=0, integer=True)),
        budget_day_usd=number(t, "budget_usd_day", 0.0, low=0.0),
        budget_month_usd=number(t, "budget_usd_month", 0.0, low=0.0),
    )
    t.done()
    return tenant


def _tables(raw: object, key: str) -> list[Tenant]:
    if not isinstance(raw, list):
        raise ConfigError(key, raw, "an array of tables ([[tenants]])")
    return [_tenant(value, f"{key}[{index}]") for index, value in enumerate(raw)]


def read_tenants_file(path: Path) -> list[Tenant]:
    """The `[[tenants]]` of a tenants file (a TOML file with only that array)."""
    key = "auth.tenants_file"
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(key, str(path), f"a readable TOML file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, str(path), f"valid TOML ({exc})") from None
    extra = sorted(set(raw) - {"tenants"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]}", raw[extra[0]], "only [[tenants]] tables")
    return _tables(raw.get("tenants", []), f"{path}: tenants")


def parse_tenants(raw: object, tenants_file: Path | None) -> tuple[Tenant, ...]:
    """Every tenant, from the config's `[[tenants]]` and the tenants file; names and key
    hashes must be unique across both."""
    tenants = _tables(raw if raw is not None else [], "tenants")
    if tenants_file is not None:
        tenants += read_tenants_file(tenants_file)
    _check_unique(tenants)
    return tuple(tenants)


def _check_unique(tenants: Sequence[Tenant]) -> None:
    names: set[str] = set()
    owners: dict[str, str] = {}
    for tenant in tenants:
        if tenant.name in names:
            raise ConfigError("tenants.name", tenant.name, "a name no other tenant has")
        names.add(tenant.name)
        for digest in tenant.key_hashes:
            if digest in owners:
                raise ConfigError(f"tenants.{tenant.name}.key_sha256", "<hidden>",
                                  f"keys no other tenant has (one is also {owners[digest]!r}'s)")
            owners[digest] = tenant.name
