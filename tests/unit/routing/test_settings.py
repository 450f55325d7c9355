"""The [routing] table: the documented format loads as is, every bad value names its key."""

from __future__ import annotations

from datetime import UTC

import pytest

from provider_router.domain import RouteTarget, Strategy
from provider_router.errors import ConfigError
from provider_router.routing.rules import AttributeIn, HourRange, RetryCount
from provider_router.routing.settings import (
    DEFAULT_PREFIXES,
    RoutingSettings,
    parse_routing_settings,
)

from .factories import ISSUE_FORMAT
from .factories import parse_settings as parse


def test_the_issue_format_loads_as_is() -> None:
    settings = parse(ISSUE_FORMAT)
    assert settings.rules_enabled
    assert (settings.default_provider, settings.default_model) == ("anthropic",
                                                                    "claude-sonnet-4-5")
    assert [r.name for r in settings.rules] == ["critical-issues-opus", "retry-use-haiku",
                                                "off-hours-haiku"]
    opus, haiku, night = settings.rules
    assert opus.conditions == (AttributeIn("priority", frozenset({"critical"})),)
    assert (opus.provider, opus.model) == ("anthropic", "claude-opus-4")
    assert haiku.conditions == (RetryCount(gte=1),)
    assert (haiku.provider, haiku.model) == ("", "claude-haiku-4")
    assert night.conditions == (HourRange(0, 8),)


def test_an_empty_table_gives_the_defaults() -> None:
    settings = parse_routing_settings({})
    assert settings == RoutingSettings()
    assert settings.strategy is Strategy.WEIGHTED
    assert settings.timezone == "UTC" and settings.zone is UTC
    assert settings.latency_alpha == 0.3
    assert settings.prefix_rules == DEFAULT_PREFIXES


def test_rules_are_sorted_by_priority_and_ties_keep_config_order() -> None:
    settings = parse("""
[[routing.rules]]
name = "low"
priority = 1
model = "a"
[[routing.rules]]
name = "high-1"
priority = 9
model = "b"
[[routing.rules]]
name = "high-2"
priority = 9
model = "c"
[[routing.rules]]
name = "off"
priority = 50
enabled = false
model = "d"
""")
    assert [r.name for r in settings.rules] == ["high-1", "high-2", "low"]


def test_strategy_rules_aliases_prefixes_and_tuning() -> None:
    settings = parse("""
[routing]
strategy = "round_robin"
failover_order = ["groq", "together"]
timezone = "Europe/Berlin"
latency_alpha = 0.5
latency_window = 50
metrics_ttl_s = 30
exploration = 0.25
default_completion_tokens = 512

[routing.aliases]
fast = ["groq/llama-3.1-8b", "together/llama-3.1-8b"]
solo = "openai/gpt-4o"

[routing.prefixes]
"mistral-" = "mistral"
"o1" = ""

[[routing.rules]]
name = "cheap-for-free-tier"
strategy = "cost"
fallbacks = ["openai/gpt-4o-mini", "fast"]

[routing.rules.conditions]
tenant = ["free", "trial"]
labels = "batch"
model = "gpt-*"
region = "eu"
beta = true
tier = 2
""")
    assert settings.strategy is Strategy.ROUND_ROBIN
    assert settings.failover_order == ("groq", "together")
    assert str(settings.zone) == "Europe/Berlin"
    assert (settings.latency_alpha, settings.latency_window) == (0.5, 50)
    assert (settings.metrics_ttl_s, settings.exploration) == (30.0, 0.25)
    assert settings.default_completion_tokens == 512
    assert settings.aliases == {
        "fast": (RouteTarget("groq", "llama-3.1-8b"), RouteTarget("together", "llama-3.1-8b")),
        "solo": (RouteTarget("openai", "gpt-4o"),)}
    prefixes = dict(settings.prefix_rules)
    assert prefixes["mistral-"] == "mistral" and "o1" not in prefixes
    assert prefixes["claude-"] == "anthropic"
    lengths = [len(p) for p, _ in settings.prefix_rules]
    assert lengths == sorted(lengths, reverse=True)
    (rule,) = settings.rules
    assert rule.strategy is Strategy.COST
    assert rule.fallbacks == ("openai/gpt-4o-mini", "fast")
    assert AttributeIn("beta", frozenset({"true"})) in rule.conditions
    assert AttributeIn("tier", frozenset({"2"})) in rule.conditions


BAD = [
    ('strategy = "fastest"', "routing.strategy"),
    ('strategy = "explicit"', "routing.strategy"),
    ('enabled = "yes"', "routing.enabled"),
    ("default_model = 3", "routing.default_model"),
    ('timezone = "Mars/Olympus"', "routing.timezone"),
    ("latency_alpha = 0", "routing.latency_alpha"),
    ("latency_alpha = 1.5", "routing.latency_alpha"),
    ("latency_window = 0", "routing.latency_window"),
    ("latency_window = 2.5", "routing.latency_window"),
    ("metrics_ttl_s = 0", "routing.metrics_ttl_s"),
    ("exploration = -0.1", "routing.exploration"),
    ("default_completion_tokens = 0", "routing.default_completion_tokens"),
    ('failover_order = "groq"', "routing.failover_order"),
    ("typo_key = 1", "routing.typo_key"),
    ('aliases = { fast = [] }', "routing.aliases.fast"),
    ('aliases = { fast = ["groq"] }', "routing.aliases.fast[0]"),
    ('aliases = { fast = ["groq/x", 3] }', "routing.aliases.fast[1]"),
    ('aliases = { fast = ["groq/x", "groq/x"] }', "routing.aliases.fast"),
    ('aliases = ["groq/x"]', "routing.aliases"),
    ('prefixes = { "gpt-" = 1 }', "routing.prefixes.gpt-"),
    ("rules = 1", "routing.rules"),
]


@pytest.mark.parametrize(("line", "key"), BAD)
def test_a_bad_top_level_value_names_its_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"[routing]\n{line}\n")
    assert caught.value.key == key


BAD_RULES = [
    ('name = "r"\nmodel = "m"\nconditions = { retry_count = { gte = -1 } }',
     "routing.rules[1].conditions.retry_count.gte"),
    ('name = "r"\nmodel = "m"\nconditions = { retry_count = { more = 1 } }',
     "routing.rules[1].conditions.retry_count.more"),
    ('name = "r"\nmodel = "m"\nconditions = { retry_count = {} }',
     "routing.rules[1].conditions.retry_count"),
    ('name = "r"\nmodel = "m"\nconditions = { retry_count = "1" }',
     "routing.rules[1].conditions.retry_count"),
    ('name = "r"\nmodel = "m"\nconditions = { retry_count = true }',
     "routing.rules[1].conditions.retry_count"),
    ('name = "r"\nmodel = "m"\nconditions = { hour_range = [8] }',
     "routing.rules[1].conditions.hour_range"),
    ('name = "r"\nmodel = "m"\nconditions = { hour_range = [8, 8] }',
     "routing.rules[1].conditions.hour_range"),
    ('name = "r"\nmodel = "m"\nconditions = { hour_range = [0, 25] }',
     "routing.rules[1].conditions.hour_range"),
    ('name = "r"\nmodel = "m"\nconditions = { hour_range = [24, 2] }',
     "routing.rules[1].conditions.hour_range"),
    ('name = "r"\nmodel = "m"\nconditions = { hour_range = ["0", 8] }',
     "routing.rules[1].conditions.hour_range"),
    ('name = "r"\nmodel = "m"\nconditions = { priority = [] }',
     "routing.rules[1].conditions.priority"),
    ('name = "r"\nmodel = "m"\nconditions = { labels = [] }',
     "routing.rules[1].conditions.labels"),
    ('name = "r"\nmodel = "m"\nconditions = { model = [1] }',
     "routing.rules[1].conditions.model"),
    ('name = "r"\nmodel = "m"\nconditions = { region = { eq = "eu" } }',
     "routing.rules[1].conditions.region"),
    ('name = "r"\nmodel = "m"\nconditions = { region = 1.5 }',
     "routing.rules[1].conditions.region"),
    ('name = "r"\nmodel = "m"\nconditions = "always"', "routing.rules[1].conditions"),
    ('model = "m"', "routing.rules[1].name"),
    ('name = ""\nmodel = "m"', "routing.rules[1].name"),
    ('name = "first"\nmodel = "m"', "routing.rules[1].name"),
    ('name = "r"', "routing.rules[1]"),
    ('name = "r"\nmodel = "m"\npriority = "high"', "routing.rules[1].priority"),
    ('name = "r"\nmodel = "m"\nstrategy = "explicit"', "routing.rules[1].strategy"),
    ('name = "r"\nmodel = "m"\nstrategy = "rules"', "routing.rules[1].strategy"),
    ('name = "r"\nfallbacks = ["a/b", ""]', "routing.rules[1].fallbacks[1]"),
    ('name = "r"\nfallbacks = "a/b"', "routing.rules[1].fallbacks"),
    ('name = "r"\nmodel = "m"\ntarget = "x"', "routing.rules[1].target"),
    ('name = "r"\nmodel = "m"\nenabled = 1', "routing.rules[1].enabled"),
]


@pytest.mark.parametrize(("body", "key"), BAD_RULES)
def test_a_bad_rule_value_names_its_dotted_key(body: str, key: str) -> None:
    text = f'[[routing.rules]]\nname = "first"\nmodel = "m"\n\n[[routing.rules]]\n{body}\n'
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key == key
    assert key in caught.value.message


def test_a_rule_that_is_not_a_table_names_its_index() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routing_settings({"rules": [{"name": "a", "model": "m"}, "oops"]})
    assert caught.value.key == "routing.rules[1]"
