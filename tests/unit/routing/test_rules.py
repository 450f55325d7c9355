"""Rule conditions: each kind matches what it should, and hour_range wraps in its time zone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from provider_router.routing.rules import (
    AnyLabel,
    AttributeIn,
    HourRange,
    ModelGlob,
    RetryCount,
    Rule,
    RuleFacts,
    parse_rules,
)

NOON = datetime(2026, 1, 1, 12, tzinfo=UTC)


def facts(attributes: Mapping[str, str] | None = None, labels: tuple[str, ...] = (),
          model: str = "m", now: datetime = NOON, zone: tzinfo = UTC) -> RuleFacts:
    return RuleFacts(dict(attributes or {}), frozenset(labels), model, now, zone)


@pytest.mark.parametrize(("condition", "attributes", "expected"), [
    (AttributeIn("priority", frozenset({"critical"})), {"priority": "critical"}, True),
    (AttributeIn("priority", frozenset({"critical"})), {"priority": "low"}, False),
    (AttributeIn("priority", frozenset({"critical"})), {}, False),
    (AttributeIn("priority", frozenset({"high", "critical"})), {"priority": "high"}, True),
    (AttributeIn("tenant", frozenset({"acme"})), {"tenant": "acme"}, True),
    (AttributeIn("region", frozenset({"eu"})), {"region": "us"}, False),
    (RetryCount(eq=0), {}, True),
    (RetryCount(gte=1), {}, False),
    (RetryCount(gte=1), {"retry_count": "1"}, True),
    (RetryCount(gte=1, lte=2), {"retry_count": "3"}, False),
    (RetryCount(lte=2), {"retry_count": "2"}, True),
    (RetryCount(eq=2), {"retry_count": "2"}, True),
    (RetryCount(gte=0), {"retry_count": "many"}, False),
])
def test_attribute_conditions(condition: AttributeIn | RetryCount,
                              attributes: dict[str, str], expected: bool) -> None:
    assert condition.matches(facts(attributes)) is expected


def test_labels_match_any_of() -> None:
    condition = AnyLabel(frozenset({"docs", "batch"}))
    assert condition.matches(facts(labels=("batch", "other")))
    assert not condition.matches(facts(labels=("other",)))
    assert not condition.matches(facts())


def test_model_glob_matches_the_requested_name() -> None:
    condition = ModelGlob(("claude-*", "gpt-4o"))
    assert condition.matches(facts(model="claude-haiku-4"))
    assert condition.matches(facts(model="gpt-4o"))
    assert not condition.matches(facts(model="gpt-4o-mini"))
    assert not condition.matches(facts(model="CLAUDE-x"))  # case matters


@pytest.mark.parametrize(("start", "end", "hour", "expected"), [
    (0, 8, 0, True), (0, 8, 7, True), (0, 8, 8, False), (0, 8, 23, False),
    (22, 6, 22, True), (22, 6, 23, True), (22, 6, 0, True), (22, 6, 5, True),
    (22, 6, 6, False), (22, 6, 12, False), (22, 6, 21, False),
    (9, 24, 23, True), (9, 24, 8, False), (0, 24, 13, True),
])
def test_hour_range_is_half_open_and_wraps_past_midnight(start: int, end: int, hour: int,
                                                         expected: bool) -> None:
    at = datetime(2026, 3, 1, hour, 30, tzinfo=UTC)
    assert HourRange(start, end).matches(facts(now=at)) is expected


def test_hour_range_is_evaluated_in_the_configured_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    off_hours = HourRange(0, 8)
    # 23:30 UTC on 1 January is 00:30 in Berlin (UTC+1): off hours there, not in UTC.
    late = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    assert off_hours.matches(facts(now=late, zone=berlin))
    assert not off_hours.matches(facts(now=late, zone=UTC))
    # In summer Berlin is UTC+2: 06:30 UTC is 08:30 there, already past the range.
    summer = datetime(2026, 7, 1, 6, 30, tzinfo=UTC)
    assert not off_hours.matches(facts(now=summer, zone=berlin))
    assert off_hours.matches(facts(now=summer, zone=UTC))


def test_a_naive_time_is_taken_as_utc() -> None:
    assert HourRange(3, 4).matches(facts(now=datetime(2026, 1, 1, 3, 0)))


def test_a_rule_needs_every_condition_and_no_condition_always_matches() -> None:
    rule = Rule("r", conditions=(AttributeIn("priority", frozenset({"critical"})),
                                 AnyLabel(frozenset({"docs"}))))
    assert rule.matches(facts({"priority": "critical"}, labels=("docs",)))
    assert not rule.matches(facts({"priority": "critical"}))
    assert Rule("catch-all", model="m").matches(facts())


def test_target_names_lead_with_provider_model_then_fallbacks() -> None:
    assert Rule("r", provider="a", model="m", fallbacks=("b/n", "alias")).target_names() == (
        "a/m", "b/n", "alias")
    assert Rule("r", model="m").target_names() == ("m",)
    assert Rule("r", provider="a").target_names() == ()


def test_parsed_rules_evaluate_like_the_issue_says() -> None:
    rules = parse_rules([
        {"name": "off-hours", "priority": 70, "conditions": {"hour_range": [22, 6]},
         "model": "small"},
        {"name": "retry", "priority": 95, "conditions": {"retry_count": {"gte": 1}},
         "model": "small"},
    ], "routing.rules")
    assert [r.name for r in rules] == ["retry", "off-hours"]
    night = datetime(2026, 1, 1, 23, tzinfo=UTC)
    assert [r.name for r in rules if r.matches(facts({"retry_count": "2"}, now=night))] == [
        "retry", "off-hours"]
    assert [r.name for r in rules if r.matches(facts())] == []
