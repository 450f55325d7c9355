"""What wraps every RPC: request id, auth (client or admin role), metrics, error → status.

Auth is a grpc.aio server interceptor so it also guards methods added later. Request id,
metrics and error mapping wrap the servicer's handlers directly (`observed_unary`,
`observed_stream`): one wrapper instead of three interceptor layers keeps the hot path cheap.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import grpc.aio

from provider_router.api.status import internal_status, to_status
from provider_router.errors import RouterError
from provider_router.telemetry.logging import REQUEST_ID
from provider_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
if TYPE_CHECKING:  # grpc's RpcMethodHandler is generic only in its type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

SERVICE = "/provider_router.v1.RouterService/"
ADMIN_METHODS = frozenset(SERVICE + m for m in ("Register", "Unregister", "UpdateMetrics"))
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException,
                 request_id: str) -> None:
    status = to_status(error) if isinstance(error, RouterError) else internal_status()
    trailing = (("x-request-id", request_id), (STATUS_DETAILS_KEY, status.SerializeToString()))
    await context.abort(grpc.StatusCode(_code(status.code)), status.message, trailing)


def _code(number: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.value  # type: ignore[no-any-return]
    return grpc.StatusCode.INTERNAL.value  # type: ignore[no-any-return]


class Observer:
    """Wraps servicer handlers with request id, metrics and error mapping."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _done(self, method: str, started: float, code: str) -> None:
        self.metrics.rpcs.labels(method, code).inc()
        self.metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)

    async def _failed(self, method: str, started: float, error: Exception,
                      context: grpc.aio.ServicerContext[Any, Any], request_id: str) -> None:
        if isinstance(error, RouterError):
            log.info("%s failed: %s (%s)", method, error.message, error.reason)
        else:
            log.exception("%s failed unexpectedly", method)
        status = to_status(error) if isinstance(error, RouterError) else internal_status()
        self._done(method, started, grpc.StatusCode(_code(status.code)).name)
        await _abort(context, error, request_id)

    def unary(self, method: str, handler: Callable[[Req, Context, str], Awaitable[Resp]]
              ) -> Callable[[Req, Context], Awaitable[Resp]]:
        """Observe a unary handler that takes (request, context, request_id)."""

        @functools.wraps(handler)
        async def wrapped(request: Req, context: Context) -> Resp:
            started = time.perf_counter()
            request_id = _request_id(context)
            token = REQUEST_ID.set(request_id)
            try:
                response = await handler(request, context, request_id)
            except asyncio.CancelledError:
                self._done(method, started, "CANCELLED")
                raise
            except Exception as error:
                await self._failed(method, started, error, context, request_id)
                raise  # unreachable: abort raises
            finally:
                REQUEST_ID.reset(token)
            context.set_trailing_metadata((("x-request-id", request_id),))
            self._done(method, started, "OK")
            return response

        return wrapped

    def stream(self, method: str,
               handler: Callable[[Req, Context, str], AsyncIterator[Resp]]
               ) -> Callable[[Req, Context], AsyncIterator[Resp]]:
        """Observe a server-streaming handler that takes (request, context, request_id)."""

        @functools.wraps(handler)
        async def wrapped(request: Req, context: Context) -> AsyncIterator[Resp]:
            started = time.perf_counter()
            request_id = _request_id(context)
            token = REQUEST_ID.set(request_id)
            try:
                async for item in handler(request, context, request_id):
                    yield item
            except asyncio.CancelledError:
                self._done(method, started, "CANCELLED")
                raise
            except Exception as error:
                await self._failed(method, started, error, context, request_id)
                raise
            finally:
                REQUEST_ID.reset(token)
            context.set_trailing_metadata((("x-request-id", request_id),))
            self._done(method, started, "OK")

        return wrapped


def _presented_key(metadata: Collection[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if not isinstance(value, str):
            continue
        if key == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
        if key == "x-api-key":
            return value.strip()
    return ""


def _matches(presented: str, keys: Collection[str]) -> bool:
    # Compare against every key in constant time so timing reveals nothing.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """API-key auth: admin keys may call everything; client keys all but admin methods.

    With no keys configured at all the service is open (a local default); health and
    reflection are always open so probes work.
    """

    def __init__(self, client_keys: Collection[str], admin_keys: Collection[str]) -> None:
        self._client = frozenset(client_keys)
        self._admin = frozenset(admin_keys)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Let the call through, or answer it with UNAUTHENTICATED / PERMISSION_DENIED."""
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES) or not (self._client or self._admin):
            return await continuation(handler_call_details)
        presented = _presented_key(handler_call_details.invocation_metadata or ())
        if not presented:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "missing API key (authorization: "
                         "Bearer <key> or x-api-key)", method)
        is_admin = _matches(presented, self._admin)
        if not is_admin and not _matches(presented, self._client):
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "invalid API key", method)
        if method in ADMIN_METHODS and not is_admin:
            return _deny(grpc.StatusCode.PERMISSION_DENIED, "an admin API key is required",
                         method)
        return await continuation(handler_call_details)


def _deny(code: grpc.StatusCode, message: str, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def unary(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    async def stream(request: object, context: grpc.aio.ServicerContext[Any, Any]
                     ) -> AsyncIterator[None]:
        await context.abort(code, message)
        yield None  # pragma: no cover - abort raises

    if method == SERVICE + "StreamChat":
        return grpc.unary_stream_rpc_method_handler(stream)
    return grpc.unary_unary_rpc_method_handler(unary)
