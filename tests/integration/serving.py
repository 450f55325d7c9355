"""Waiting for a `provider-router serve` subprocess to report SERVING."""

from __future__ import annotations

import asyncio
import time

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Own connection per channel, so SO_REUSEPORT can hand each to either worker.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


async def wait_serving(target: str, timeout_s: float, what: str = "the server") -> None:
    """Poll `target`'s health service, over a new connection each time, until SERVING."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not become SERVING")
