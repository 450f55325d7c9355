"""The standard grpc.health.v1 service: overall, RouterService and per-provider status.

Service names: "" (overall) and "provider_router.v1.RouterService" are SERVING once the
server is ready and NOT_SERVING from the moment it starts draining; each provider is
reported under "provider_router.provider.<name>" (SERVING while it can take traffic), and
the state backend under "provider_router.state" (NOT_SERVING while Redis is unreachable: the
router still serves, from its last known state, so the overall status does not change).
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

SERVICE_NAME = "provider_router.v1.RouterService"
PROVIDER_PREFIX = "provider_router.provider."
STATE_SERVICE = "provider_router.state"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Owns the health servicer and the transitions the server goes through."""

    def __init__(self) -> None:
        self.servicer = HealthServicer()
        self._draining = False

    async def starting(self) -> None:
        """Not ready yet: probes must fail until `serving`."""
        await self.servicer.set("", NOT_SERVING)
        await self.servicer.set(SERVICE_NAME, NOT_SERVING)

    async def serving(self) -> None:
        """Ready to take traffic."""
        await self.servicer.set("", SERVING)
        await self.servicer.set(SERVICE_NAME, SERVING)

    async def draining(self) -> None:
        """Shutting down: every service NOT_SERVING from now on, permanently."""
        self._draining = True
        await self.servicer.enter_graceful_shutdown()

    async def state_backend(self, up: bool) -> None:
        """Report whether the state backend is reachable."""
        if not self._draining:
            await self.servicer.set(STATE_SERVICE, SERVING if up else NOT_SERVING)

    async def provider(self, name: str, serving: bool) -> None:
        """Report one provider's health."""
        await self.servicer.set(PROVIDER_PREFIX + name, SERVING if serving else NOT_SERVING)

    async def provider_removed(self, name: str) -> None:
        """A removed provider is reported as NOT_SERVING (watchers learn it is gone)."""
        await self.servicer.set(PROVIDER_PREFIX + name, NOT_SERVING)
