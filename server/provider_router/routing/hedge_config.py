"""The `[routing.hedge]` table: hedged requests for every call that does not say otherwise.

```toml
[routing.hedge]
after = 0.4            # seconds without an answer (Chat) or a first token (StreamChat) before
                       # the next target starts too; or "p95" (any "pNN", e.g. "p99.5"): that
                       # percentile of the target's observed latency (Chat) or TTFT (StreamChat)
fallback_after = 1.0   # with a percentile: the delay while the target has fewer than
                       # min_samples observations (unset: no hedge until it has them)
min_samples = 20       # observations a percentile needs
max_hedges = 1         # extra targets at most per request: 1 or 2
tools = false          # hedge requests that carry tools too
enabled = true         # false keeps the table but turns hedging off
```

A request's own `routing.hedge` replaces this policy for that request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provider_router.config_values import Table, boolean, number
from provider_router.domain import HedgePolicy
from provider_router.errors import ConfigError

MAX_HEDGES = 2
"""More parallel copies of one request than this multiply spend for little gain."""

MAX_AFTER_S = 86_400.0
DEFAULT_MIN_SAMPLES = 20

_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    """The configured hedging policy (None: off unless a request asks) and its tuning."""

    policy: HedgePolicy | None = None
    min_samples: int = DEFAULT_MIN_SAMPLES


def parse_hedge_settings(raw: object, path: str) -> HedgeSettings:
    """The `[routing.hedge]` table (None when absent) → HedgeSettings, or ConfigError."""
    if raw is None:
        return HedgeSettings()
    if not isinstance(raw, dict):
        raise ConfigError(path, raw, "a table")
    t = Table(path, raw)
    after_s, percentile = _after(t)
    fallback = t.get("fallback_after")
    if fallback is not None:
        if percentile is None:
            raise ConfigError(t.key("fallback_after"), fallback,
                              "unset unless after is a percentile such as \"p95\"")
        after_s = number(t, "fallback_after", None, low=0.0, high=MAX_AFTER_S)
    policy = HedgePolicy(
        after_s=after_s, percentile=percentile,
        max_hedges=int(number(t, "max_hedges", 1, low=1, high=MAX_HEDGES, integer=True)),
        allow_tools=boolean(t, "tools", False))
    min_samples = int(number(t, "min_samples", DEFAULT_MIN_SAMPLES, low=1, high=100_000,
                             integer=True))
    enabled = boolean(t, "enabled", True)
    t.done()
    return HedgeSettings(policy if enabled else None, min_samples)


def _after(t: Table) -> tuple[float | None, float | None]:
    """(fixed delay, percentile) from `after`: seconds, or a string "pNN"."""
    value = t.get("after")
    expected = "seconds (a number >= 0) or a percentile such as \"p95\""
    if isinstance(value, str):
        found = _PERCENTILE.fullmatch(value)
        if found is None or not 0.0 < float(found.group(1)) < 100.0:
            raise ConfigError(t.key("after"), value, expected)
        return None, float(found.group(1))
    if value is None:
        raise ConfigError(t.key("after"), None, f"{expected} (required)")
    return number(t, "after", None, low=0.0, high=MAX_AFTER_S), None
