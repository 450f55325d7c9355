"""The Connector protocol every provider module implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from provider_router.domain import ChatResult, ProbeResult, ProviderRequest, StreamEvent
from provider_router.resilience.deadline import Deadline


class Connector(Protocol):
    """Talks to one provider. Raises only `provider_router.errors.ProviderError` subclasses."""

    async def chat(self, request: ProviderRequest, deadline: Deadline) -> ChatResult:
        """Complete the request in one call."""
        ...

    def stream(self, request: ProviderRequest, deadline: Deadline
               ) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer: deltas, then exactly one StreamFinish; raises on failure."""
        ...

    async def probe(self) -> ProbeResult:
        """A cheap liveness check that spends no tokens."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections and processes."""
        ...
