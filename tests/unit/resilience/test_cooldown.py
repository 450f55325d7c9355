"""CooldownBook: Retry-After honoured and capped, a doubling default, quota, forgetting."""

from __future__ import annotations

import pytest

from provider_router.resilience.cooldown import CooldownBook, CooldownConfig
from tests.unit.resilience.conftest import FakeClock


def book(clock: FakeClock, default_s: float = 1.0, max_s: float = 60.0) -> CooldownBook:
    return CooldownBook(CooldownConfig(default_s, max_s), clock)


def test_retry_after_is_honoured_for_that_target_only(clock: FakeClock) -> None:
    cooldowns = book(clock)
    assert cooldowns.start("p", "a", 7.5) == 7.5
    assert cooldowns.cooling("p", "a")
    assert not cooldowns.cooling("p", "b") and not cooldowns.cooling("q", "a")
    assert cooldowns.remaining("p", "a") == 7.5
    clock.advance(7.4)
    assert cooldowns.cooling("p", "a")
    clock.advance(0.1)
    assert not cooldowns.cooling("p", "a")
    assert cooldowns.remaining("p", "a") == 0.0


def test_retry_after_is_capped(clock: FakeClock) -> None:
    assert book(clock, max_s=60.0).start("p", "a", 3600.0) == 60.0


def test_without_retry_after_the_default_doubles_while_the_429s_persist(
        clock: FakeClock) -> None:
    cooldowns = book(clock, default_s=1.0, max_s=5.0)
    lengths = []
    for _ in range(5):
        length = cooldowns.start("p", "a", None)
        lengths.append(length)
        clock.advance(length)  # asked again the moment the cooldown ends: still limited
    assert lengths == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_429_long_after_the_last_cooldown_starts_short_again(clock: FakeClock) -> None:
    cooldowns = book(clock, default_s=1.0)
    cooldowns.start("p", "a", None)
    clock.advance(1.0)
    assert cooldowns.start("p", "a", None) == 2.0
    clock.advance(2.0 + 2.0)  # a whole cooldown length passed without a 429
    assert cooldowns.start("p", "a", None) == 1.0


def test_a_spent_quota_cools_for_the_maximum(clock: FakeClock) -> None:
    cooldowns = book(clock, max_s=60.0)
    assert cooldowns.start("p", "a", None, quota=True) == 60.0
    assert cooldowns.start("p", "b", 5.0, quota=True) == 5.0


def test_an_empty_book_is_the_cheap_case_again_once_cooldowns_end(clock: FakeClock) -> None:
    cooldowns = book(clock)
    assert not cooldowns.until
    cooldowns.start("p", "a", 1.0)
    clock.advance(1.0)
    assert not cooldowns.cooling("p", "a")
    assert not cooldowns.until


def test_forget_drops_a_providers_cooldowns(clock: FakeClock) -> None:
    cooldowns = book(clock)
    cooldowns.start("p", "a", 5.0)
    cooldowns.start("q", "a", 5.0)
    cooldowns.forget("p")
    assert not cooldowns.cooling("p", "a") and cooldowns.cooling("q", "a")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="negative"):
        CooldownConfig(default_s=-1.0)
