"""What wraps every RPC: request id, auth (client or admin role), metrics, error → status.

Auth is a grpc.aio server interceptor so it also guards methods added later; with no keys
configured the service is open and the composition root installs no interceptor at all (a
grpc.aio interceptor costs a coroutine per call). Request id, metrics and error mapping wrap
the servicer's handlers directly (`Observer.unary`, `Observer.stream`): one wrapper instead
of three interceptor layers, with its metric children looked up once per method.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hmac
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
import grpc.aio
from google.rpc import status_pb2
from prometheus_client import Counter, Histogram

from provider_router import domain as d
from provider_router.api.status import code_for, internal_status, to_status
from provider_router.errors import RouterError
from provider_router.telemetry.access import CallLog
from provider_router.telemetry.logging import REQUEST_ID
from provider_router.telemetry.metrics import Metrics
from provider_router.v1 import router_pb2 as pb

if TYPE_CHECKING:
    from provider_router.telemetry.tracing import Tracing
from provider_router.tenants import hash_key

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
E = TypeVar("E")
if TYPE_CHECKING:  # grpc's RpcMethodHandler is generic only in its type stubs
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]

SERVICE = "/provider_router.v1.RouterService/"
ADMIN_METHODS = frozenset(SERVICE + m for m in ("Register", "Unregister", "UpdateMetrics",
                                                 "GetUsage", "ListTenants"))
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
STATUS_DETAILS_KEY = "grpc-status-details-bin"

AUTHENTICATED_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar(
    "authenticated_tenant", default="")
"""The tenant the current call's API key belongs to; set only by AuthInterceptor, read by
the servicer, which puts it in the domain request (caller-supplied fields never count)."""


class RequestIds:
    """Request ids: the caller's `x-request-id`, else a new one.

    New ids are a random per-process prefix and a counter (32 hex digits, like a UUID's):
    unique across processes and restarts without a urandom call and a UUID per request.
    Prefix and counter are one integer (prefix in the high 64 bits), formatted once.
    """

    def __init__(self) -> None:
        self._counter = itertools.count(int.from_bytes(os.urandom(8)) << 64 | 1)

    def __call__(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The id of the call `context` belongs to."""
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
                return value
        return "%032x" % next(self._counter)  # noqa: UP031  # a fifth cheaper than f"{n:032x}"


def _status(error: Exception) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The code and rich status for an error; unexpected ones say only INTERNAL."""
    if isinstance(error, RouterError):
        return code_for(error), to_status(error)
    return grpc.StatusCode.INTERNAL, internal_status()


def _prompt(request: Any) -> dict[str, object]:
    """The request's messages for an access line with `[logging] content = true`."""
    return {"prompt": [{"role": pb.Role.Name(m.role).removeprefix("ROLE_").lower(),
                        "content": m.content} for m in request.messages]}


class Observer:
    """Wraps servicer handlers with request id, metrics, the access line, error mapping and,
    while tracing is on, a server span.

    What is on is decided here, once per method, by choosing the wrapper: with tracing off
    no traced wrapper exists, with content logging off no text is gathered.
    """

    def __init__(self, metrics: Metrics, calls: CallLog | None = None,
                 tracing: Tracing | None = None, content: bool = False) -> None:
        self.metrics = metrics
        self.calls = calls if calls is not None else CallLog(metrics, None)
        self.request_id = RequestIds()
        self._tracing = tracing
        self._content = content and self.calls.logging

    def _done(self, method: str, started: float, code: str, request_id: str,
              error: Exception | None = None) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.rpcs.labels(method, code).inc()
        self.metrics.rpc_seconds.labels(method).observe(elapsed)
        if isinstance(error, RouterError):
            self.calls.finished(method, request_id, code, elapsed, None, error.attempts,
                                error.reason, tenant=AUTHENTICATED_TENANT.get())
        else:
            self.calls.finished(method, request_id, code, elapsed,
                                reason="INTERNAL" if error is not None else "")

    async def _failed(self, method: str, started: float, error: Exception,
                      context: grpc.aio.ServicerContext[Any, Any], request_id: str) -> None:
        if isinstance(error, RouterError):
            log.info("%s failed: %s (%s)", method, error.message, error.reason)
        else:
            log.exception("%s failed unexpectedly", method)
        code, status = _status(error)
        self._done(method, started, code.name, request_id, error)
        trailing = (("x-request-id", request_id), (STATUS_DETAILS_KEY, status.SerializeToString()))
        await context.abort(code, status.message, trailing)

    def _bound(self, method: str) -> tuple[Counter, Histogram, RequestIds, CallLog]:
        """The method's success counter and latency histogram (looked up once), the
        request-id source and the call log, for the wrapper's closure."""
        return (self.metrics.rpcs.labels(method, "OK"), self.metrics.rpc_seconds.labels(method),
                self.request_id, self.calls)

    def unary(self, method: str, handler: Callable[[Req, Context, str], Awaitable[Resp]]
              ) -> Callable[[Req, Context], Awaitable[Resp]]:
        """Observe a unary handler that takes (request, context, request_id)."""
        ok, seconds, request_ids, calls = self._bound(method)

        @functools.wraps(handler)
        async def wrapped(request: Req, context: Context) -> Resp:
            started = time.perf_counter()
            request_id = request_ids(context)
            token = REQUEST_ID.set(request_id)
            try:
                response = await handler(request, context, request_id)
            except asyncio.CancelledError:
                self._done(method, started, "CANCELLED", request_id)
                raise
            except Exception as error:
                await self._failed(method, started, error, context, request_id)
                raise  # unreachable: abort raises
            finally:
                REQUEST_ID.reset(token)
            context.set_trailing_metadata((("x-request-id", request_id),))
            ok.inc()
            elapsed = time.perf_counter() - started
            seconds.observe(elapsed)
            calls.finished(method, request_id, "OK", elapsed)
            return response

        return self._traced_unary(method, wrapped)

    def answer(self, method: str, handler: Callable[[Req, Context], Awaitable[d.ChatResponse]],
               to_proto: Callable[[d.ChatResponse, str], Resp]
               ) -> Callable[[Req, Context], Awaitable[Resp]]:
        """Observe a unary handler that answers with a domain ChatResponse, sent as
        `to_proto(response, request_id)`; its tokens, cost and attempts are accounted for."""
        ok, seconds, request_ids, calls = self._bound(method)
        content = self._content

        async def wrapped(request: Req, context: Context) -> Resp:
            started = time.perf_counter()
            request_id = request_ids(context)
            token = REQUEST_ID.set(request_id)
            try:
                response = await handler(request, context)
            except asyncio.CancelledError:
                self._done(method, started, "CANCELLED", request_id)
                raise
            except Exception as error:
                await self._failed(method, started, error, context, request_id)
                raise  # unreachable: abort raises
            finally:
                REQUEST_ID.reset(token)
            context.set_trailing_metadata((("x-request-id", request_id),))
            ok.inc()
            elapsed = time.perf_counter() - started
            seconds.observe(elapsed)
            calls.finished(method, request_id, "OK", elapsed, response, content=(
                {**_prompt(request), "answer": response.result.text} if content else None),
                tenant=AUTHENTICATED_TENANT.get())
            return to_proto(response, request_id)

        wrapped.__name__ = wrapped.__qualname__ = method
        return self._traced_unary(method, wrapped)

    def stream(self, method: str, open_events: Callable[[Req, Context], AsyncIterator[E]],
               to_proto: Callable[[E, str], Resp]) -> Callable[[Req, Context], AsyncIterator[Resp]]:
        """Observe a server-streaming RPC: `open_events(request, context)` gives the domain
        events, each sent as `to_proto(event, request_id)`; the last, a StreamEnded, is
        accounted for like a Chat answer.

        One async generator between gRPC and the router: every layer stacked here would
        cost a resumption per message of every stream.
        """
        ok, seconds, request_ids, calls = self._bound(method)
        open_streams = self.metrics.open_streams
        content = self._content

        async def wrapped(request: Req, context: Context) -> AsyncIterator[Resp]:
            started = time.perf_counter()
            request_id = request_ids(context)
            token = REQUEST_ID.set(request_id)
            open_streams.inc()
            event: E | None = None
            text: list[str] | None = [] if content else None
            try:
                async for event in open_events(request, context):
                    if text is not None and isinstance(event, d.TextDelta):
                        text.append(event.text)
                    yield to_proto(event, request_id)
            except asyncio.CancelledError:
                self._done(method, started, "CANCELLED", request_id)
                raise
            except Exception as error:
                await self._failed(method, started, error, context, request_id)
                raise
            finally:
                REQUEST_ID.reset(token)
                open_streams.dec()
            context.set_trailing_metadata((("x-request-id", request_id),))
            ok.inc()
            elapsed = time.perf_counter() - started
            seconds.observe(elapsed)
            calls.finished(method, request_id, "OK", elapsed,
                           event if type(event) is d.StreamEnded else None,
                           content=None if text is None else {**_prompt(request),
                                                              "answer": "".join(text)},
                           tenant=AUTHENTICATED_TENANT.get())

        wrapped.__name__ = wrapped.__qualname__ = method
        return self._traced_stream(method, wrapped)

    def _traced_unary(self, method: str, plain: Callable[[Req, Context], Awaitable[Resp]]
                      ) -> Callable[[Req, Context], Awaitable[Resp]]:
        """`plain` inside a server span while tracing is on; `plain` itself otherwise."""
        tracing = self._tracing
        if tracing is None:
            return plain

        async def traced(request: Req, context: Context) -> Resp:
            with tracing.server_span(method, context.invocation_metadata()):
                return await plain(request, context)

        traced.__name__ = traced.__qualname__ = method
        return traced

    def _traced_stream(self, method: str, plain: Callable[[Req, Context], AsyncIterator[Resp]]
                       ) -> Callable[[Req, Context], AsyncIterator[Resp]]:
        """`plain` inside a server span while tracing is on; `plain` itself otherwise."""
        tracing = self._tracing
        if tracing is None:
            return plain

        async def traced(request: Req, context: Context) -> AsyncIterator[Resp]:
            # The span is current only while each message is produced (Tracing.stepped):
            # gRPC may leave this generator to be closed by another task.
            with tracing.stream_server_span(method, context.invocation_metadata()) as span:
                messages = tracing.stepped(span, plain(request, context), trail=True)
                async with contextlib.aclosing(messages) as stream:
                    async for message in stream:
                        yield message

        traced.__name__ = traced.__qualname__ = method
        return traced


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


class TenantKeys:
    """API-key hashes (tenants.hash_key) and the tenant each belongs to.

    A presented key is hashed once and compared with every stored hash in constant time
    (hmac.compare_digest), so neither the match nor its position shows in the timing.
    """

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._entries = tuple((h.encode(), tenant) for h, tenant in hashes.items())

    def __bool__(self) -> bool:
        return bool(self._entries)

    def tenant_for(self, presented: str) -> str | None:
        """The tenant of a presented key, or None when no tenant has it."""
        digest = hash_key(presented).encode()
        found: str | None = None
        for stored, tenant in self._entries:
            if hmac.compare_digest(digest, stored):
                found = tenant
        return found


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """API-key auth: admin keys may call everything; client and tenant keys all but admin
    methods. A tenant key's call runs with AUTHENTICATED_TENANT set to its tenant.

    With no keys configured at all the service is open (a local default); health and
    reflection are always open so probes work.
    """

    def __init__(self, client_keys: Collection[str], admin_keys: Collection[str],
                 tenant_keys: TenantKeys | None = None) -> None:
        self._client = frozenset(client_keys)
        self._admin = frozenset(admin_keys)
        self._tenants = tenant_keys if tenant_keys else None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Let the call through, or answer it with UNAUTHENTICATED / PERMISSION_DENIED."""
        method = handler_call_details.method
        if method.startswith(OPEN_PREFIXES) or not (self._client or self._admin or self._tenants):
            return await continuation(handler_call_details)
        presented = _presented_key(handler_call_details.invocation_metadata or ())
        if not presented:
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "missing API key (authorization: "
                         "Bearer <key> or x-api-key)", method)
        is_admin = _matches(presented, self._admin)
        tenant = self._tenants.tenant_for(presented) if self._tenants is not None else None
        if not is_admin and tenant is None and not _matches(presented, self._client):
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "invalid API key", method)
        if method in ADMIN_METHODS and not is_admin:
            return _deny(grpc.StatusCode.PERMISSION_DENIED, "an admin API key is required",
                         method)
        handler = await continuation(handler_call_details)
        if tenant is None or is_admin:
            return handler
        return _as_tenant(handler, tenant)


def _as_tenant(handler: Handler, tenant: str) -> Handler:
    """The handler, run with AUTHENTICATED_TENANT set to `tenant`."""
    if handler is None:
        return handler
    if handler.unary_unary is not None:
        unary_inner: Any = handler.unary_unary  # an async handler: its stubs say sync

        async def unary(request: object, context: Context) -> object:
            AUTHENTICATED_TENANT.set(tenant)  # the call's own task: nothing else sees it
            return await unary_inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream is not None:
        stream_inner: Any = handler.unary_stream

        async def stream(request: object, context: Context) -> AsyncIterator[object]:
            AUTHENTICATED_TENANT.set(tenant)
            async for message in stream_inner(request, context):
                yield message

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer)
    return handler


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
