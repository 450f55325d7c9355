"""One error hierarchy for the whole service.

Every failure is classified once, where it happens (a connector's `map_error`, validation,
the router); api/status.py maps the classes to gRPC status codes in one table. Messages never
contain secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from provider_router.domain import Attempt, AttemptOutcome, ExclusionReason


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One problem with one field of a request or config."""

    field: str
    description: str


class RouterError(Exception):
    """Base of every error this service raises on purpose."""

    reason: str = "ROUTER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Every attempt made before this error ended the call (status details carry them).
        self.attempts: tuple[Attempt, ...] = ()

    def info(self) -> dict[str, str]:
        """Extra facts for the status's ErrorInfo metadata (none by default)."""
        return {}


# --- caller and configuration errors --------------------------------------------------------


class InvalidRequestError(RouterError):
    """The request is invalid; one violation per bad field."""

    reason = "INVALID_REQUEST"

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations


class NotFoundError(RouterError):
    """Something the caller named does not exist."""

    reason = "NOT_FOUND"


class UnknownModelError(NotFoundError):
    """No provider serves the model and there is no default."""

    reason = "UNKNOWN_MODEL"

    def __init__(self, model: str) -> None:
        super().__init__(f"unknown model {model!r}: no provider serves it and no default is set")
        self.model = model


class UnknownProviderError(NotFoundError):
    """No provider of that name is registered."""

    reason = "UNKNOWN_PROVIDER"

    def __init__(self, provider: str) -> None:
        super().__init__(f"unknown provider {provider!r}")
        self.provider = provider


class UnauthenticatedError(RouterError):
    """The caller sent no credentials, or wrong ones."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(RouterError):
    """The caller's credentials do not allow this call."""

    reason = "PERMISSION_DENIED"


class ModelNotAllowedError(PermissionDeniedError):
    """The caller's tenant may not use the requested model."""

    reason = "MODEL_NOT_ALLOWED"

    def __init__(self, tenant: str, model: str) -> None:
        super().__init__(f"tenant {tenant!r} may not use model {model!r}")
        self.tenant = tenant
        self.model = model

    def info(self) -> dict[str, str]:
        """Tenant and model, for ErrorInfo metadata."""
        return {"tenant": self.tenant, "model": self.model}


class ProviderNotAllowedError(PermissionDeniedError):
    """The caller's tenant named a provider it may not use."""

    reason = "PROVIDER_NOT_ALLOWED"

    def __init__(self, tenant: str, provider: str) -> None:
        super().__init__(f"tenant {tenant!r} may not use provider {provider!r}")
        self.tenant = tenant
        self.provider = provider

    def info(self) -> dict[str, str]:
        """Tenant and provider, for ErrorInfo metadata."""
        return {"tenant": self.tenant, "provider": self.provider}


class ConfigError(RouterError):
    """A bad configuration value: names the key, the value and what was expected."""

    reason = "BAD_CONFIG"

    def __init__(self, key: str, value: object, expected: str) -> None:
        shown = _show(value)
        super().__init__(f"config {key}: got {shown}, expected {expected}")
        self.key = key
        self.value = shown
        self.expected = expected


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- routing outcomes -----------------------------------------------------------------------


class RateLimitedError(RouterError):
    """Our own limit, or every candidate is rate limited."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: float | None = None,
                 attempts: tuple[Attempt, ...] = ()) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.attempts = attempts


class TenantRateLimitedError(RateLimitedError):
    """The caller's tenant used up its own requests or tokens per minute."""

    reason = "TENANT_RATE_LIMITED"

    def __init__(self, tenant: str, retry_after_s: float) -> None:
        super().__init__(f"tenant {tenant!r} is over its rate limit; retry in "
                         f"{retry_after_s:.2f}s", retry_after_s)
        self.tenant = tenant

    def info(self) -> dict[str, str]:
        """The tenant, for ErrorInfo metadata."""
        return {"tenant": self.tenant}


class BudgetExceededError(RateLimitedError):
    """The caller's tenant has spent its budget for the day or the month."""

    reason = "BUDGET_EXCEEDED"

    def __init__(self, tenant: str, period: str, limit_usd: float, spent_usd: float,
                 retry_after_s: float) -> None:
        super().__init__(f"tenant {tenant!r} has spent its {period} budget "
                         f"(${spent_usd:.4f} of ${limit_usd:.4f})", retry_after_s)
        self.tenant = tenant
        self.period = period
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd

    def info(self) -> dict[str, str]:
        """Tenant, period, limit and spend, for ErrorInfo metadata."""
        return {"tenant": self.tenant, "period": self.period,
                "limit_usd": f"{self.limit_usd:.6f}", "spent_usd": f"{self.spent_usd:.6f}"}


class UnavailableError(RouterError):
    """No candidate could serve: none healthy, or every attempt failed."""

    reason = "NO_PROVIDER_AVAILABLE"

    def __init__(self, message: str, attempts: tuple[Attempt, ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class StateUnavailableError(UnavailableError):
    """The shared state backend (Redis) cannot be reached, so a change cannot be stored."""

    reason = "STATE_BACKEND_UNAVAILABLE"


class NoCandidateError(UnavailableError):
    """The planner found no eligible candidate; says why each one was excluded."""

    def __init__(self, message: str,
                 exclusions: tuple[tuple[str, str, ExclusionReason], ...] = ()) -> None:
        super().__init__(message)
        # (provider, model, reason) per excluded candidate.
        self.exclusions = exclusions


class StreamBrokenError(UnavailableError):
    """A stream broke after deltas reached the caller and could not be completed."""

    reason = "STREAM_BROKEN"

    def __init__(self, message: str, delivered_deltas: int,
                 attempts: tuple[Attempt, ...] = ()) -> None:
        super().__init__(message, attempts)
        self.delivered_deltas = delivered_deltas


class DeadlineExceededError(RouterError):
    """The request's deadline was spent."""

    reason = "DEADLINE_EXCEEDED"

    def __init__(self, message: str = "deadline exceeded",
                 attempts: tuple[Attempt, ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


# --- provider errors (raised by connectors' map_error) --------------------------------------


class ProviderError(RouterError):
    """A provider call failed. `retryable` says whether the same provider may be retried."""

    reason = "PROVIDER_ERROR"
    outcome: AttemptOutcome = AttemptOutcome.PROVIDER_ERROR
    retryable: bool = True
    # A caller error is the request's fault: it never retries and never trips a breaker.
    caller_error: bool = False
    # The provider could not be reached at all (DNS, refused, TLS, connect timeout): a
    # failure of the whole provider, counted by its provider-level breaker, not a model's.
    connection_level: bool = False

    def __init__(self, provider: str, message: str, status_code: int = 0,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class ProviderServerError(ProviderError):
    """5xx, 408 or an error event from the provider: worth retrying."""

    reason = "PROVIDER_SERVER_ERROR"


class ProviderRateLimitError(ProviderError):
    """429: retry after `retry_after_s` when given, else back off."""

    reason = "PROVIDER_RATE_LIMITED"
    outcome = AttemptOutcome.RATE_LIMITED


class ProviderQuotaError(ProviderRateLimitError):
    """The account's quota or billing limit is spent: a long cooldown, not a retry."""

    reason = "PROVIDER_QUOTA_EXHAUSTED"
    retryable = False


class ProviderConnectionError(ProviderError):
    """Connection refused or reset before any response byte."""

    reason = "PROVIDER_CONNECTION_FAILED"
    outcome = AttemptOutcome.CONNECTION_FAILED


class ProviderUnreachableError(ProviderConnectionError):
    """No connection could be made (DNS, refused, TLS handshake)."""

    connection_level = True


class ProviderTimeoutError(ProviderError):
    """A timeout (connect, first token, idle, total). `phase` names which one."""

    reason = "PROVIDER_TIMEOUT"
    outcome = AttemptOutcome.TIMEOUT
    # A provider that never answered is not retried on the same route: fail over instead.
    retryable = False

    def __init__(self, provider: str, phase: str, timeout_s: float) -> None:
        super().__init__(provider, f"{phase} timeout after {timeout_s:.3g}s")
        self.phase = phase
        self.timeout_s = timeout_s
        self.connection_level = phase == "connect"


class ProviderSilentError(ProviderTimeoutError):
    """The provider held the call silent for long, then failed it (typically closed the
    connection before any answer): treated like a first-token timeout, so the same target
    is not retried and the failover moves on."""

    def __init__(self, provider: str, spent_s: float, cause: str) -> None:
        # ProviderError's constructor, not the timeout's: the message says what happened.
        ProviderError.__init__(self, provider, f"no answer for {spent_s:.3g}s, then {cause} "
                               "(counted as a first-token timeout)")
        self.phase = "first_token"
        self.timeout_s = spent_s


class ProviderProtocolError(ProviderError):
    """The provider answered with something we cannot parse."""

    reason = "PROVIDER_PROTOCOL_ERROR"


class ProviderAuthError(ProviderError):
    """The provider rejected our credentials (401/403)."""

    reason = "PROVIDER_AUTH_FAILED"
    outcome = AttemptOutcome.AUTH_FAILED
    retryable = False


class ProviderRejectedError(ProviderError):
    """The provider rejected the request itself (400, 404, 413, 422)."""

    reason = "PROVIDER_REJECTED_REQUEST"
    outcome = AttemptOutcome.REJECTED
    retryable = False
    caller_error = True


class ContextLengthError(ProviderRejectedError):
    """The prompt does not fit the model's context window."""

    reason = "CONTEXT_LENGTH_EXCEEDED"


class ContentPolicyError(ProviderRejectedError):
    """The provider's content policy rejected the request."""

    reason = "CONTENT_POLICY"


class ProviderUnavailableError(ProviderError):
    """The provider cannot be used on this host (missing key, binary or env var)."""

    reason = "PROVIDER_UNAVAILABLE"
    outcome = AttemptOutcome.SKIPPED
    retryable = False
