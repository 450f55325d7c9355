"""The caller's own fallbacks (`RoutingOptions.fallbacks`): ordered provider/model targets
tried after the routed candidates.

Routing rules stay the place for policy; a per-request list is for the caller who knows
what it can live with ("this model, else that one at another provider"). Each target must
name a registered provider (INVALID_ARGUMENT naming `routing.fallbacks[i].provider`
otherwise); its model need not be listed, as for `provider/model`. A target already in the
chain is not added twice; one that cannot serve now is reported in Route's explanation with
its exclusion reason, like any candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.domain import RouteTarget
from provider_router.errors import FieldViolation, InvalidRequestError
from provider_router.routing.candidates import Candidate, make_candidate
from provider_router.routing.registry import RegistrySnapshot


def check_fallbacks(snapshot: RegistrySnapshot, fallbacks: Sequence[RouteTarget]) -> None:
    """Raise InvalidRequestError when a fallback names a provider that is not registered."""
    violations = tuple(
        FieldViolation(f"routing.fallbacks[{i}].provider",
                       f"no provider named {target.provider!r} is registered")
        for i, target in enumerate(fallbacks) if target.provider not in snapshot.providers)
    if violations:
        raise InvalidRequestError("invalid routing.fallbacks", violations)


def fallback_candidates(snapshot: RegistrySnapshot, fallbacks: Sequence[RouteTarget],
                        taken: set[RouteTarget]) -> list[tuple[int, Candidate]]:
    """(position in the list, candidate) for each fallback not in `taken`, in order."""
    found: list[tuple[int, Candidate]] = []
    for index, target in enumerate(fallbacks):
        spec = snapshot.providers.get(target.provider)
        if spec is None or target in taken:
            continue
        taken.add(target)
        found.append((index, make_candidate(spec, target.model)))
    return found


def fallback_detail(index: int) -> str:
    """The explanation shown for a fallback the request named."""
    return f"fallback named by the request (routing.fallbacks[{index}])"
