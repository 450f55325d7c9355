"""The floor: the least a grpc.aio → aiohttp proxy can do, measured on this machine.

RouterService with Chat and StreamChat only (and Route as a bare gRPC echo): no routing,
breakers, limits, metrics or logging; one aiohttp session; uvloop. Issue 6 measured this
shape at +0.47 ms and 3,600 requests/s on its reference machine; the harness measures it in
the same run as the router, so the router's figures read as multiples of what Python gRPC
allows here.

Usage: python -m bench.floor_server --listen 127.0.0.1:50060 --upstream http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from provider_router.v1 import router_pb2 as pb
from provider_router.v1 import router_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class FloorServicer(router_pb2_grpc.RouterServiceServicer):
    """Forwards Chat and StreamChat to one upstream."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10_000))
        return self._session

    def _body(self, request: pb.ChatRequest | pb.StreamChatRequest, stream: bool) -> bytes:
        body: dict[str, object] = {
            "model": request.routing.model,
            "messages": [{"role": "user", "content": m.content} for m in request.messages]}
        if stream:
            body["stream"] = True
        return json.dumps(body, separators=(",", ":")).encode()

    def _url(self, model: str) -> str:
        return f"{self._upstream}/mock/20/0/v1/chat/completions" if "chunky" in model else (
            f"{self._upstream}/v1/chat/completions")

    async def Route(self, request: pb.RouteRequest, context: Context) -> pb.RouteResponse:
        """The gRPC unary floor: an answer without any work (issue 6's "echo")."""
        return pb.RouteResponse(provider="floor", model=request.routing.model)

    async def Chat(self, request: pb.ChatRequest, context: Context) -> pb.ChatResponse:
        """One upstream call, one response."""
        async with self._http().post(self._url(request.routing.model),
                                     data=self._body(request, False),
                                     headers={"Content-Type": "application/json"}) as response:
            answer = json.loads(await response.read())
        choice = answer["choices"][0]
        return pb.ChatResponse(
            provider="floor", model=answer["model"],
            message=pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=choice["message"]["content"]),
            finish_reason=pb.FINISH_REASON_STOP)

    async def StreamChat(self, request: pb.StreamChatRequest, context: Context
                         ) -> AsyncIterator[pb.StreamChatResponse]:
        """Forward each SSE data line as a delta, then an end message."""
        yield pb.StreamChatResponse(start=pb.StreamStart(provider="floor"))
        async with self._http().post(self._url(request.routing.model),
                                     data=self._body(request, True),
                                     headers={"Content-Type": "application/json"}) as response:
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices", ()):
                    text = choice.get("delta", {}).get("content")
                    if text:
                        yield pb.StreamChatResponse(delta=pb.StreamDelta(text=text))
        yield pb.StreamChatResponse(end=pb.StreamEnd(finish_reason=pb.FINISH_REASON_STOP))


async def serve(listen: str, upstream: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=(("grpc.so_reuseport", 0),))
    # The base class answers UNIMPLEMENTED for the RPCs the floor leaves out.
    servicer = FloorServicer(upstream)  # type: ignore[abstract]
    router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    checker = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(listen)
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    """Parse arguments and serve on uvloop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True, help="the mock's base URL")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.listen, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
