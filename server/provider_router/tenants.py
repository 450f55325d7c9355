"""Tenants: who an API key belongs to, what the tenant may use, and its spending periods.

Keys are stored as SHA-256 hex digests, never as plain text. That is enough for API keys:
they are long random strings (>= 128 bits), so no dictionary or brute-force search can find a
preimage, and a slow password hash (bcrypt, argon2) would only add milliseconds to every
call without protecting anything a fast hash does not. Keys a person made up are not API
keys: `provider-router hash-key` refuses ones shorter than MIN_KEY_LENGTH.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

MIN_KEY_LENGTH = 20
"""The shortest key `hash-key` accepts: anything shorter is guessable, not an API key."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Tenant names: they appear in metric labels, Redis keys and status metadata."""

UNTENANTED = "(none)"
"""The name spend of callers without a tenant is recorded under (flat and admin keys)."""

DEFAULT_TENANT = "default"
"""A tenant with this name, when configured, holds the callers of the flat key lists."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The stored form of an API key: its SHA-256 as 64 lowercase hex digits."""
    return hashlib.sha256(key.encode()).hexdigest()


def is_key_hash(value: str) -> bool:
    """Whether `value` looks like `hash_key`'s output."""
    return bool(_HEX64.match(value))


def _any_match(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant: its key hashes and limits. Empty pattern lists and zero limits mean none."""

    name: str
    key_hashes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    rpm: int = 0
    tpm: int = 0
    budget_day_usd: float = 0.0
    budget_month_usd: float = 0.0

    def allows_model(self, model: str) -> bool:
        """Whether the model, as the caller named it (alias, model or provider/model), may be
        used. `provider/model` also matches patterns written for the bare model."""
        if not self.models:
            return True
        if _any_match(model, self.models):
            return True
        _, slash, bare = model.partition("/")
        return bool(slash) and _any_match(bare, self.models)

    def allows_provider(self, provider: str) -> bool:
        """Whether the provider may serve the tenant."""
        return not self.providers or _any_match(provider, self.providers)

    @property
    def has_budget(self) -> bool:
        """Whether a day or month budget is set."""
        return self.budget_day_usd > 0 or self.budget_month_usd > 0


@dataclass(frozen=True, slots=True)
class SpendPeriods:
    """The current UTC day and month at one instant, as store keys, and when each resets."""

    day: str
    month: str
    day_resets_in_s: float
    month_resets_in_s: float

    @property
    def keys(self) -> tuple[str, str]:
        """(day key, month key)."""
        return (self.day, self.month)


def periods_at(now: datetime) -> SpendPeriods:
    """The spend periods `now` falls in (UTC calendar day and month)."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = day_start + timedelta(days=1)
    month_start = day_start.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    return SpendPeriods(day=f"day:{now:%Y-%m-%d}", month=f"month:{now:%Y-%m}",
                        day_resets_in_s=(next_day - now).total_seconds(),
                        month_resets_in_s=(next_month - now).total_seconds())


@dataclass(frozen=True, slots=True)
class SpendLine:
    """Spend of one tenant on one provider model within one period."""

    provider: str
    model: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's spend in the current day and month, with its budgets."""

    tenant: str
    periods: SpendPeriods
    spent_day_usd: float
    spent_month_usd: float
    budget_day_usd: float
    budget_month_usd: float
    day_lines: tuple[SpendLine, ...]
    month_lines: tuple[SpendLine, ...]
