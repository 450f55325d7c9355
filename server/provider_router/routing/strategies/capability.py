"""`capability`: the best capability match first, ties broken by priority.

Every eligible candidate already has the capabilities the request requires, so "best" looks
further: the capabilities the request would use (required ones, plus vision for images,
tools for tool definitions, json for a JSON response format, streaming for a stream).
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_router.domain import Capability, ChatRequest, ResponseFormatType
from provider_router.routing.candidates import Candidate
from provider_router.routing.strategies.base import Ranked, StrategyContext


def wanted(request: ChatRequest) -> frozenset[Capability]:
    """The capabilities the request requires or would use."""
    found = set(request.routing.capabilities)
    if any(m.has_images() for m in request.messages):
        found.add(Capability.VISION)
    if request.tools:
        found.add(Capability.TOOLS)
    fmt = request.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        found.add(Capability.JSON)
    if request.stream:
        found.add(Capability.STREAMING)
    return frozenset(found)


def order(ctx: StrategyContext, candidates: Sequence[Candidate]) -> list[Ranked]:
    """Most wanted capabilities first; score = the share of them the model has."""
    want = wanted(ctx.request)
    if not want:
        return [(c, 1.0, "") for c in candidates]
    scored = [(c, len(want & c.capabilities)) for c in candidates]
    scored.sort(key=lambda item: -item[1])
    return [(c, hits / len(want), f"{hits} of {len(want)} wanted capabilities")
            for c, hits in scored]
