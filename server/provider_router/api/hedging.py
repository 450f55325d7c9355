"""HedgeOptions → the domain's HedgePolicy, with one field violation per problem."""

from __future__ import annotations

import math
from collections.abc import Callable

from provider_router import domain as d
from provider_router.routing.hedge_config import MAX_AFTER_S, MAX_HEDGES
from provider_router.v1 import router_pb2 as pb

AddViolation = Callable[[str, str], None]
"""Records one problem with one field (api.convert.Violations.add)."""

_FIELD = "routing.hedge"


def hedge_to_domain(msg: pb.HedgeOptions, add: AddViolation) -> d.HedgePolicy:
    """A request's HedgeOptions as a policy; problems are reported through `add`."""
    if msg.disabled:
        return d.NO_HEDGING
    after = msg.after.ToTimedelta().total_seconds() if msg.HasField("after") else None
    percentile = msg.after_percentile if msg.HasField("after_percentile") else None
    if after is not None and not 0.0 <= after <= MAX_AFTER_S:
        add(f"{_FIELD}.after", f"must be between 0 and {MAX_AFTER_S:g} seconds")
    if percentile is not None and not (math.isfinite(percentile) and 0.0 < percentile < 100.0):
        add(f"{_FIELD}.after_percentile", "must be greater than 0 and less than 100")
    if after is None and percentile is None:
        add(_FIELD, "set after, after_percentile (or both), or disabled")
    if not 0 <= msg.max_hedges <= MAX_HEDGES:
        add(f"{_FIELD}.max_hedges", f"must be 1 or 2 (0 means 1), got {msg.max_hedges}")
    return d.HedgePolicy(after_s=after, percentile=percentile, max_hedges=msg.max_hedges or 1,
                         allow_tools=msg.allow_tools)
