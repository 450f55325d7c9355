"""Domain errors → gRPC status with rich details: the one table of DESIGN.md §5."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from provider_router import errors as e
from provider_router.api.responses import add_attempts, duration
from provider_router.v1 import router_pb2 as pb

DOMAIN = "provider-router"

# Most specific class first: the first isinstance match wins.
STATUS_TABLE: tuple[tuple[type[e.RouterError], grpc.StatusCode], ...] = (
    (e.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.ProviderRejectedError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (e.RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (e.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (e.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (e.ProviderAuthError, grpc.StatusCode.INTERNAL),
    (e.ProviderTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (e.ProviderRateLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.ProviderError, grpc.StatusCode.UNAVAILABLE),
)


def code_for(error: e.RouterError) -> grpc.StatusCode:
    """The gRPC code for a domain error."""
    for cls, code in STATUS_TABLE:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_after(error: e.RouterError) -> float | None:
    if isinstance(error, e.RateLimitedError | e.ProviderError):
        return error.retry_after_s
    return None


def _details(error: e.RouterError) -> list[any_pb2.Any]:
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN,
                                                 metadata=error.info()))]
    if isinstance(error, e.InvalidRequestError) and error.violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ])))
    retry_after = _retry_after(error)
    if retry_after is not None:
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=duration(retry_after))))
    attempts = error.attempts
    delivered = error.delivered_deltas if isinstance(error, e.StreamBrokenError) else 0
    if attempts or delivered:
        detail = pb.AttemptsDetail(delivered_deltas=delivered)
        add_attempts(detail.attempts, attempts)
        details.append(_pack(detail))
    return details


def to_status(error: e.RouterError) -> status_pb2.Status:
    """The google.rpc.Status for a domain error, with ErrorInfo and typed details."""
    code = code_for(error)
    return status_pb2.Status(code=code.value[0], message=error.message, details=_details(error))


def internal_status(message: str = "internal error") -> status_pb2.Status:
    """A generic INTERNAL status for unexpected failures (details are logged, not sent)."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)
