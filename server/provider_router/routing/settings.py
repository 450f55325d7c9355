"""Typed routing configuration, parsed from the `[routing]` table of the TOML config.

Every key is optional; an unknown key is an error (a typo must not change routing silently).

```toml
[routing]
strategy = "weighted"        # how candidates are ordered when no rule matches: weighted (default),
                             # round_robin, least_loaded, latency, cost, capability, failover,
                             # affinity, default, or rules (rules only; no match -> weighted)
enabled = true               # rule routing on/off (default true; without rules it does nothing)
default_provider = "anthropic"       # used when the request names no model, or a bare one
default_model = "claude-sonnet-4-5"  # nobody serves (never for provider/model); a model alone
                                     # = any provider serving it (or an alias); a provider
                                     # alone = its first listed model
failover_order = ["anthropic", "openai"]  # the `failover` strategy: these first, in order
timezone = "Europe/Berlin"   # IANA zone for hour_range conditions (default "UTC")
latency_alpha = 0.3          # EMA smoothing of observed latency and TTFT, in (0, 1]
latency_window = 100         # samples kept per provider for p50/p95/p99 and the error rate
metrics_ttl_s = 60.0         # how long UpdateMetrics values count when the report sets no ttl
exploration = 0.1            # latency strategy: chance an unmeasured provider is tried first
default_completion_tokens = 256  # cost strategy: completion size when max_tokens is unset
# [routing.hedge]: hedged requests, see routing/hedge_config.py

[routing.aliases]            # one logical name -> several deployments ("provider/model")
fast = ["groq/llama-3.1-8b", "together/llama-3.1-8b"]

[routing.prefixes]           # model prefix -> provider, for models no provider lists; merged
"mistral-" = "mistral"       # over the defaults gpt-/o1/o3 -> openai, claude- -> anthropic,
"o1" = ""                    # gemini- -> gemini; "" removes a default; the longest prefix wins

[[routing.rules]]            # tried highest priority first; the first that can serve wins
name = "critical-issues-opus"    # required, unique
priority = 100                   # default 0; ties keep config order
enabled = true                   # default true; false skips the rule
conditions = { priority = "critical" }  # all must hold; {} or absent always matches
provider = "anthropic"           # target: provider and model; model alone = any provider
model = "claude-opus-4"          # serving it (an alias works too); provider alone = the
                                 # requested model at that provider
fallbacks = ["openai/gpt-4o", "claude-haiku-4"]  # more targets after provider/model, in order
strategy = "cost"                # orders the rule's targets (default: as listed); with no
                                 # target at all it orders the request's own candidates
```

Conditions: `priority` and `tenant` (a string or a list: the attribute equals one),
`labels` (a string or list: the request carries any of them), `retry_count` (an integer,
or a table of `gte`, `lte`, `eq`; a missing attribute counts as 0), `hour_range = [start, end)`
(integer hours in `timezone`; start > end wraps past midnight, e.g. [22, 6]), `model` (a
shell glob or a list of them, matched against the model or alias the request named; empty when
it named none), and any other key:
the request attribute of that name equals the value (numbers and booleans compare as text:
`tier = 2` matches "2", `beta = true` matches "true"; a list means any of).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provider_router.config_values import Table, boolean, number, string_list, text
from provider_router.domain import RouteTarget, Strategy
from provider_router.errors import ConfigError
from provider_router.routing.hedge_config import HedgeSettings, parse_hedge_settings
from provider_router.routing.rules import Rule, parse_rules

DEFAULT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude-", "anthropic"), ("gemini-", "gemini"),
    ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"),
)
"""Model name prefix → provider name, for models that no provider lists (longest first)."""

# "explicit" is what the caller gets by naming provider/model; it cannot be configured.
_CONFIGURABLE = tuple(s.value for s in Strategy if s is not Strategy.EXPLICIT)


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """The `[routing]` table: strategy, defaults, rules, aliases, prefixes and tuning."""

    strategy: Strategy = Strategy.WEIGHTED
    rules_enabled: bool = True
    default_provider: str = ""
    default_model: str = ""
    rules: tuple[Rule, ...] = ()
    aliases: Mapping[str, tuple[RouteTarget, ...]] = field(default_factory=dict)
    prefix_rules: tuple[tuple[str, str], ...] = DEFAULT_PREFIXES
    failover_order: tuple[str, ...] = ()
    timezone: str = "UTC"
    latency_alpha: float = 0.3
    latency_window: int = 100
    metrics_ttl_s: float = 60.0
    exploration: float = 0.1
    default_completion_tokens: int = 256
    hedge: HedgeSettings = field(default_factory=HedgeSettings)

    @property
    def zone(self) -> tzinfo:
        """The time zone of hour_range conditions (ZoneInfo caches instances)."""
        # UTC needs no tz database, so containers without tzdata still work by default.
        return UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)


def parse_routing_settings(raw: Mapping[str, object]) -> RoutingSettings:
    """Parse the `[routing]` table (may be empty); ConfigError names any bad key."""
    t = Table("routing", raw)
    settings = RoutingSettings(
        strategy=_strategy(t),
        rules_enabled=boolean(t, "enabled", True),
        default_provider=text(t, "default_provider", ""),
        default_model=text(t, "default_model", ""),
        rules=parse_rules(t.get("rules"), t.key("rules")),
        aliases=_aliases(t.get("aliases"), t.key("aliases")),
        prefix_rules=_prefixes(t.get("prefixes"), t.key("prefixes")),
        failover_order=string_list(t, "failover_order"),
        timezone=_timezone(t),
        latency_alpha=_open_unit(t, "latency_alpha", 0.3),
        latency_window=int(number(t, "latency_window", 100, low=1, high=100_000, integer=True)),
        metrics_ttl_s=_positive(t, "metrics_ttl_s", 60.0),
        exploration=number(t, "exploration", 0.1, low=0.0, high=1.0),
        default_completion_tokens=int(number(t, "default_completion_tokens", 256, low=1,
                                             high=10_000_000, integer=True)),
        hedge=parse_hedge_settings(t.get("hedge"), t.key("hedge")),
    )
    t.done()
    return settings


def _strategy(t: Table) -> Strategy:
    value = text(t, "strategy", Strategy.WEIGHTED.value)
    if value not in _CONFIGURABLE:
        raise ConfigError(t.key("strategy"), value, f"one of {', '.join(_CONFIGURABLE)}")
    return Strategy(value)


def _open_unit(t: Table, name: str, default: float) -> float:
    value = number(t, name, default, low=0.0, high=1.0)
    if value <= 0.0:
        raise ConfigError(t.key(name), value, "a number > 0 and <= 1")
    return value


def _positive(t: Table, name: str, default: float) -> float:
    value = number(t, name, default, low=0.0)
    if value <= 0.0:
        raise ConfigError(t.key(name), value, "a number > 0")
    return value


def _timezone(t: Table) -> str:
    value = text(t, "timezone", "UTC")
    if value == "UTC":
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(t.key("timezone"), value,
                          "an IANA time zone such as 'Europe/Berlin'") from exc
    return value


def _target(value: object, key: str) -> RouteTarget:
    if isinstance(value, str):
        provider, slash, model = value.partition("/")
        if slash and provider and model:
            return RouteTarget(provider, model)
    raise ConfigError(key, value, "a 'provider/model' string")


def _aliases(value: object, key: str) -> Mapping[str, tuple[RouteTarget, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table of alias = ['provider/model', ...]")
    aliases: dict[str, tuple[RouteTarget, ...]] = {}
    for name, entries in value.items():
        path = f"{key}.{name}"
        items = [entries] if isinstance(entries, str) else entries
        if not isinstance(items, list) or not items:
            raise ConfigError(path, entries, "a non-empty list of 'provider/model' strings")
        targets = tuple(_target(item, f"{path}[{i}]") for i, item in enumerate(items))
        if len(set(targets)) != len(targets):
            raise ConfigError(path, entries, "deployments listed once each")
        aliases[name] = targets
    return aliases


def _prefixes(value: object, key: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return DEFAULT_PREFIXES
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table of prefix = 'provider'")
    merged = dict(DEFAULT_PREFIXES)
    for prefix, provider in value.items():
        if not isinstance(provider, str) or not prefix:
            raise ConfigError(f"{key}.{prefix}", provider, "a provider name ('' removes it)")
        merged[prefix] = provider
    # Longest first, so "o1-mini-" can override "o1" when both are configured.
    kept = [(p, name) for p, name in merged.items() if name]
    return tuple(sorted(kept, key=lambda item: -len(item[0])))
