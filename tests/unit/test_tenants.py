"""Tenant policy, periods, key hashes and the [[tenants]] config."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provider_router.api.interceptors import TenantKeys
from provider_router.config import build_config
from provider_router.errors import ConfigError
from provider_router.tenants import Tenant, hash_key, periods_at

HASH = hash_key("k" * 32)


@pytest.mark.parametrize(("patterns", "model", "allowed"), [
    ((), "anything", True),
    (("gpt-4o*",), "gpt-4o-mini", True),
    (("gpt-4o*",), "openai/gpt-4o", True),     # bare pattern matches provider/model
    (("gpt-4o*",), "gpt-3.5", False),
    (("openai/*",), "openai/gpt-4o", True),
    (("openai/*",), "gpt-4o", False),
    (("gpt-4o",), "openai/gpt-4o/extra", False),
])
def test_model_patterns(patterns: tuple[str, ...], model: str, allowed: bool) -> None:
    assert Tenant("t", models=patterns).allows_model(model) is allowed


def test_provider_patterns() -> None:
    tenant = Tenant("t", providers=("openai*", "mock"))
    assert tenant.allows_provider("openai-eu") and tenant.allows_provider("mock")
    assert not tenant.allows_provider("anthropic")
    assert Tenant("t").allows_provider("anything")


@pytest.mark.parametrize(("now", "day", "month", "day_left", "month_left"), [
    (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "day:2026-12-31", "month:2026-12", 3600, 3600),
    (datetime(2026, 2, 28, 0, 0, tzinfo=UTC), "day:2026-02-28", "month:2026-02", 86_400,
     86_400),
    (datetime(2024, 2, 29, 12, 0, tzinfo=UTC), "day:2024-02-29", "month:2024-02", 43_200,
     43_200),
])
def test_periods_and_resets(now: datetime, day: str, month: str, day_left: float,
                            month_left: float) -> None:
    periods = periods_at(now)
    assert (periods.day, periods.month) == (day, month)
    assert periods.day_resets_in_s == day_left
    assert periods.month_resets_in_s == month_left


def test_periods_use_utc_for_other_zones() -> None:
    from datetime import timedelta, timezone
    local = datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert periods_at(local).month == "month:2026-11"


def test_tenant_keys_find_the_tenant_by_hash() -> None:
    keys = TenantKeys({hash_key("a" * 24): "acme", hash_key("b" * 24): "beta"})
    assert keys.tenant_for("a" * 24) == "acme"
    assert keys.tenant_for("b" * 24) == "beta"
    assert keys.tenant_for("c" * 24) is None
    assert keys.tenant_for(hash_key("a" * 24)) is None  # the hash itself is not a key
    assert not TenantKeys({})


def _config(tenants: object) -> object:
    return build_config({"tenants": tenants}, {}, "test")


def test_tenants_parse_with_every_key() -> None:
    config = build_config({"tenants": [{
        "name": "acme", "key_sha256": [HASH.upper()], "models": ["gpt-*"],
        "providers": ["openai"], "rpm": 10, "tpm": 1000, "budget_usd_day": 1.5,
        "budget_usd_month": 20}]}, {}, "test")
    assert config.tenants == (Tenant("acme", (HASH,), ("gpt-*",), ("openai",), 10, 1000, 1.5,
                                     20.0),)


@pytest.mark.parametrize(("tenants", "key"), [
    ([{"name": "bad name", "key_sha256": [HASH]}], "tenants[0].name"),
    ([{"name": "(none)"}], "tenants[0].name"),
    ([{"name": "a", "key_sha256": ["plaintext-key"]}], "tenants[0].key_sha256[0]"),
    ([{"name": "a", "budget_usd_day": -1}], "tenants[0].budget_usd_day"),
    ([{"name": "a", "rpm": 1.5}], "tenants[0].rpm"),
    ([{"name": "a", "budget": 1}], "tenants[0].budget"),
    ([{"name": "a"}, {"name": "a"}], "tenants.name"),
    ([{"name": "a", "key_sha256": [HASH]}, {"name": "b", "key_sha256": [HASH]}],
     "tenants.b.key_sha256"),
    ({"name": "a"}, "tenants"),
])
def test_bad_tenants_name_the_key(tenants: object, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tenants)
    assert info.value.message.startswith(key + ":") or f"{key}:" in info.value.message
    assert "plaintext-key" not in info.value.message


def test_tenants_file_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(f'[[tenants]]\nname = "file"\nkey_sha256 = ["{HASH}"]\n')
    config = build_config({"auth": {"tenants_file": str(path)},
                           "tenants": [{"name": "inline"}]}, {}, "test")
    assert [t.name for t in config.tenants] == ["inline", "file"]
    path.write_text('[server]\nlisten = "x"\n')
    with pytest.raises(ConfigError, match=re.escape("only [[tenants]] tables")):
        build_config({"auth": {"tenants_file": str(path)}}, {}, "test")
    with pytest.raises(ConfigError, match=re.escape("auth.tenants_file")):
        build_config({"auth": {"tenants_file": str(tmp_path / "missing.toml")}}, {}, "test")
