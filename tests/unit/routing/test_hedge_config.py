"""[routing.hedge]: the documented keys load; every bad value names its key."""

from __future__ import annotations

import pytest

from provider_router.config import build_config, load_config
from provider_router.domain import HedgePolicy
from provider_router.errors import ConfigError
from provider_router.routing.hedge_config import HedgeSettings, parse_hedge_settings
from provider_router.routing.settings import parse_routing_settings

PATH = "routing.hedge"


def test_absent_means_no_configured_hedging() -> None:
    assert parse_routing_settings({}).hedge == HedgeSettings(None, 20)


def test_a_fixed_delay() -> None:
    settings = parse_hedge_settings({"after": 0.4, "max_hedges": 2, "tools": True}, PATH)
    assert settings.policy == HedgePolicy(after_s=0.4, max_hedges=2, allow_tools=True)


@pytest.mark.parametrize(("text", "percentile"), [("p95", 95.0), ("p99.5", 99.5), ("p1", 1.0)])
def test_a_percentile_with_its_fallback_delay(text: str, percentile: float) -> None:
    settings = parse_hedge_settings({"after": text, "fallback_after": 1, "min_samples": 5},
                                    PATH)
    assert settings.policy == HedgePolicy(after_s=1.0, percentile=percentile)
    assert settings.min_samples == 5


def test_enabled_false_keeps_the_table_but_turns_hedging_off() -> None:
    assert parse_hedge_settings({"after": 0.2, "enabled": False}, PATH).policy is None


def test_the_routing_table_reads_its_hedge_subtable() -> None:
    config = build_config({"routing": {"hedge": {"after": "p90"}}}, {}, "test")
    assert config.routing.hedge.policy == HedgePolicy(percentile=90.0)


def test_an_env_override_sets_the_table_inline() -> None:
    env = {"PROVIDER_ROUTER_ROUTING_HEDGE": '{ after = 0.25, max_hedges = 2 }',
           "PROVIDER_ROUTER_STATE_REGISTRY_FILE": ""}
    config = load_config(None, env)
    assert config.routing.hedge.policy == HedgePolicy(after_s=0.25, max_hedges=2)


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "routing.hedge.after"),
    ({"after": "p100"}, "routing.hedge.after"),
    ({"after": "p0"}, "routing.hedge.after"),
    ({"after": "fast"}, "routing.hedge.after"),
    ({"after": -0.5}, "routing.hedge.after"),
    ({"after": True}, "routing.hedge.after"),
    ({"after": 0.2, "max_hedges": 3}, "routing.hedge.max_hedges"),
    ({"after": 0.2, "max_hedges": 0}, "routing.hedge.max_hedges"),
    ({"after": 0.2, "fallback_after": 1.0}, "routing.hedge.fallback_after"),
    ({"after": "p95", "fallback_after": -1}, "routing.hedge.fallback_after"),
    ({"after": 0.2, "min_samples": 0}, "routing.hedge.min_samples"),
    ({"after": 0.2, "tools": "yes"}, "routing.hedge.tools"),
    ({"after": 0.2, "afterr": 1}, "routing.hedge.afterr"),
])
def test_bad_values_name_their_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_hedge_settings(raw, PATH)
    assert caught.value.key == key


def test_not_a_table() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routing_settings({"hedge": 0.4})
    assert caught.value.key == "routing.hedge"
