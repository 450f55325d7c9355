"""The rules engine: priority-ordered rules, each a set of conditions and a target.

A rule matches when every one of its conditions holds (an empty `conditions` table always
matches). The planner tries matching rules from the highest priority down; the first whose
target can serve the request wins. Parsing lives here too, so every bad value raises a
ConfigError naming its dotted key, e.g. `routing.rules[1].conditions.retry_count`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from provider_router.config_values import Table, boolean, number, string_list, text
from provider_router.domain import Strategy
from provider_router.errors import ConfigError

# Attributes with a condition of their own; any other condition key is attribute equality.
_RETRY_COUNT = "retry_count"
_HOUR_RANGE = "hour_range"
_LABELS = "labels"
_MODEL = "model"
_BOUNDS = ("gte", "lte", "eq")
# A rule may order its own targets with any strategy but these two: "explicit" is the
# caller's and "rules" would recurse.
RULE_STRATEGIES = tuple(s for s in Strategy if s not in (Strategy.EXPLICIT, Strategy.RULES))


@dataclass(frozen=True, slots=True)
class RuleFacts:
    """What conditions look at: the request's attributes, labels and model, and the time."""

    attributes: Mapping[str, str]
    labels: frozenset[str]
    model: str
    now: datetime
    zone: tzinfo

    def hour(self) -> int:
        """The hour of `now` in the configured time zone (naive times are UTC)."""
        now = self.now if self.now.tzinfo is not None else self.now.replace(tzinfo=UTC)
        return now.astimezone(self.zone).hour


class Condition(Protocol):
    """One test a rule's request must pass."""

    def matches(self, facts: RuleFacts) -> bool:
        """Whether the request passes this test."""
        ...


@dataclass(frozen=True, slots=True)
class AttributeIn:
    """attributes[name] equals one of the values (priority, tenant, any other attribute)."""

    name: str
    values: frozenset[str]

    def matches(self, facts: RuleFacts) -> bool:
        """Whether the attribute is set to one of the values."""
        return facts.attributes.get(self.name) in self.values


@dataclass(frozen=True, slots=True)
class AnyLabel:
    """The request carries at least one of the labels."""

    values: frozenset[str]

    def matches(self, facts: RuleFacts) -> bool:
        """Whether a label is shared."""
        return not self.values.isdisjoint(facts.labels)


@dataclass(frozen=True, slots=True)
class RetryCount:
    """attributes["retry_count"] within bounds; a missing attribute counts as 0 (first try)."""

    gte: int | None = None
    lte: int | None = None
    eq: int | None = None

    def matches(self, facts: RuleFacts) -> bool:
        """Whether the retry count is within bounds; a non-integer never matches."""
        try:
            count = int(facts.attributes.get(_RETRY_COUNT, "0"))
        except ValueError:
            return False
        return ((self.gte is None or count >= self.gte)
                and (self.lte is None or count <= self.lte)
                and (self.eq is None or count == self.eq))


@dataclass(frozen=True, slots=True)
class HourRange:
    """The hour is in [start, end) in the configured time zone; start > end wraps midnight."""

    start: int
    end: int

    def matches(self, facts: RuleFacts) -> bool:
        """Whether the current hour is inside the range."""
        hour = facts.hour()
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True, slots=True)
class ModelGlob:
    """The requested model (or alias) matches one of the shell-style patterns."""

    patterns: tuple[str, ...]

    def matches(self, facts: RuleFacts) -> bool:
        """Whether a pattern matches the requested model name."""
        return any(fnmatch.fnmatchcase(facts.model, p) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class Rule:
    """A named, prioritised set of conditions and what to do when they all hold."""

    name: str
    priority: int = 0
    conditions: tuple[Condition, ...] = ()
    provider: str = ""
    model: str = ""
    fallbacks: tuple[str, ...] = ()
    strategy: Strategy | None = None

    def matches(self, facts: RuleFacts) -> bool:
        """Whether every condition holds."""
        return all(c.matches(facts) for c in self.conditions)

    def target_names(self) -> tuple[str, ...]:
        """The rule's targets as names: `provider/model`, a model or alias, in order."""
        first = f"{self.provider}/{self.model}" if self.provider and self.model else self.model
        return ((first,) if first else ()) + self.fallbacks


# --- parsing --------------------------------------------------------------------------------


def parse_rules(value: object, key: str) -> tuple[Rule, ...]:
    """The `[[routing.rules]]` array, highest priority first (config order breaks ties)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, value, "an array of tables ([[routing.rules]])")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, raw in enumerate(value):
        path = f"{key}[{index}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(path, raw, "a table")
        rule = _parse_rule(Table(path, raw))
        if rule is None:
            continue
        if rule.name in names:
            raise ConfigError(f"{path}.name", rule.name, "a name not used by another rule")
        names.add(rule.name)
        rules.append(rule)
    return tuple(sorted(rules, key=lambda r: -r.priority))


def _parse_rule(t: Table) -> Rule | None:
    name = text(t, "name", "")
    if not name:
        raise ConfigError(t.key("name"), t.get("name"), "a non-empty string (required)")
    rule = Rule(
        name=name,
        priority=int(number(t, "priority", 0, low=-1_000_000, high=1_000_000, integer=True)),
        conditions=_parse_conditions(t.get("conditions"), t.key("conditions")),
        provider=text(t, "provider", ""),
        model=text(t, "model", ""),
        fallbacks=_nonempty_strings(t, "fallbacks"),
        strategy=_rule_strategy(t),
    )
    enabled = boolean(t, "enabled", True)
    t.done()
    if not (rule.model or rule.fallbacks or rule.strategy or rule.provider):
        raise ConfigError(t.path, name, "a rule with model, provider, fallbacks or strategy")
    return rule if enabled else None


def _nonempty_strings(t: Table, name: str) -> tuple[str, ...]:
    values = string_list(t, name)
    for index, value in enumerate(values):
        if not value:
            raise ConfigError(f"{t.key(name)}[{index}]", value, "a non-empty string")
    return values


def _rule_strategy(t: Table) -> Strategy | None:
    value = text(t, "strategy", "")
    if not value:
        return None
    allowed = [s.value for s in RULE_STRATEGIES]
    if value not in allowed:
        raise ConfigError(t.key("strategy"), value, f"one of {', '.join(allowed)}")
    return Strategy(value)


def _parse_conditions(value: object, key: str) -> tuple[Condition, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a table of conditions")
    return tuple(_parse_condition(name, raw, f"{key}.{name}") for name, raw in value.items())


def _parse_condition(name: str, value: object, key: str) -> Condition:
    if name == _RETRY_COUNT:
        return _parse_retry_count(value, key)
    if name == _HOUR_RANGE:
        return _parse_hour_range(value, key)
    if name == _LABELS:
        return AnyLabel(frozenset(_strings(value, key)))
    if name == _MODEL:
        return ModelGlob(_strings(value, key))
    return AttributeIn(name, frozenset(_scalars(value, key)))


def _strings(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(key, value, "a string or a non-empty list of strings")


def _scalar(value: object) -> str | None:
    # Attributes arrive as strings, so a TOML number or boolean compares as its text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def _scalars(value: object, key: str) -> tuple[str, ...]:
    items: Sequence[object] = value if isinstance(value, list) else [value]
    texts = [_scalar(v) for v in items]
    if not items or any(t is None for t in texts):
        raise ConfigError(key, value, "a string, integer or boolean, or a non-empty list of them")
    return tuple(t for t in texts if t is not None)


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(key, value, "an integer >= 0")
    return value


def _parse_retry_count(value: object, key: str) -> RetryCount:
    if not isinstance(value, Mapping):
        if isinstance(value, int) and not isinstance(value, bool):
            return RetryCount(eq=_count(value, key))
        raise ConfigError(key, value, "an integer or a table of gte, lte, eq")
    if not value:
        raise ConfigError(key, value, "at least one of gte, lte, eq")
    bounds: dict[str, int] = {}
    for bound, raw in value.items():
        if bound not in _BOUNDS:
            raise ConfigError(f"{key}.{bound}", raw, "one of gte, lte, eq")
        bounds[bound] = _count(raw, f"{key}.{bound}")
    return RetryCount(gte=bounds.get("gte"), lte=bounds.get("lte"), eq=bounds.get("eq"))


def _parse_hour_range(value: object, key: str) -> HourRange:
    expected = "[start, end] with integer hours, 0 <= start <= 23, 0 <= end <= 24, start != end"
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(key, value, expected)
    start, end = value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ConfigError(key, value, expected)
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise ConfigError(key, value, expected)
    return HourRange(start, end)
