"""`affinity`: the same affinity_key keeps going to the same provider while it is eligible.

Weighted rendezvous hashing: each candidate scores weight / -ln(hash(key, provider)), and the
highest wins. Adding or removing a provider moves only the keys it wins or held, and when the
favourite is excluded (unhealthy, breaker open) the key falls to its second choice and comes
back afterwards. The hash is blake2b, not `hash()`, so every replica agrees. Without a key
the order is `weighted`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies import weighted
from provider_router.routing.strategies.base import Ranked, StrategyContext

_SPAN = float(2**64)


def rendezvous_score(key: str, candidate: Candidate) -> float:
    """The candidate's weighted rendezvous score for `key` (higher wins; weight 0 scores 0)."""
    seed = f"{key}\x00{candidate.spec.name}\x00{candidate.target.model}".encode()
    digest = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "big")
    unit = (digest + 0.5) / _SPAN  # strictly inside (0, 1)
    return candidate.spec.weight / -math.log(unit)


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Highest rendezvous score first; score = that score."""
    key = ctx.request.routing.affinity_key
    if not key:
        ctx.notes.append("affinity: no affinity_key given; ordered by weighted")
        return weighted.order(ctx, candidates)
    scored = [(c, rendezvous_score(key, c)) for c in candidates]
    scored.sort(key=lambda item: -item[1])
    return [(c, score, "") for c, score in scored]
