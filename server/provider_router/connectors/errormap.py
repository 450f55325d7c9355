"""Declarative error tables: provider status + body → one `ProviderError` class.

Each provider module declares a tuple of `ErrorRule`s and gets its `map_error` from
`table_mapper`; the first rule that matches the HTTP status, the provider's error codes
and the message markers wins, and the status fallback handles everything else. Retry
hints come from one shared header parser.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from provider_router.connectors.payload import field, items, obj, parse_json, text
from provider_router.domain import JsonValue
from provider_router.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
)

ErrorMapper = Callable[[str, int, str, Mapping[str, str]], ProviderError]
"""A provider's map_error: (provider, status, body text, headers) → error."""

# Long enough to explain, short enough for a log line or a gRPC status message.
_MAX_MESSAGE = 300
# Key-shaped tokens some providers echo back in auth errors (OpenAI masks most of it, but
# not all of it); scrubbed so an error message can never carry a credential fragment.
_KEYLIKE = re.compile(r"\b(?:sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{8,})")


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What a provider said in an error body: its message and machine codes."""

    message: str = ""
    codes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of an error table; empty criteria match anything, all given ones must match."""

    error: type[ProviderError]
    statuses: frozenset[int] = frozenset()
    codes: frozenset[str] = frozenset()
    markers: tuple[str, ...] = ()

    def matches(self, status: int, body: ErrorBody) -> bool:
        """Whether this rule applies to a status and a parsed body."""
        if self.statuses and status not in self.statuses:
            return False
        if self.codes and not self.codes & body.codes:
            return False
        lowered = body.message.lower()
        return not self.markers or any(marker in lowered for marker in self.markers)


def parse_error_body(body_text: str) -> ErrorBody:
    """The message and codes of the error shapes the supported providers send.

    OpenAI and vLLM: {"error": {"message", "type", "code"}}; Anthropic: {"type": "error",
    "error": {"type", "message"}}; Gemini (google.rpc.Status): {"error": {"code", "message",
    "status", "details": [{"reason"}]}}; Ollama: {"error": "text"}; FastAPI: {"detail"}.
    Anything else keeps its raw text as the message.
    """
    try:
        payload = parse_json(body_text)
    except ValueError:
        return ErrorBody(body_text.strip())
    error = field(payload, "error")
    if isinstance(error, str):
        return ErrorBody(error)
    source = obj(error) or obj(payload)
    message = text(source.get("message")) or text(obj(payload).get("detail")) or body_text
    codes = {v.lower() for v in (_code(source.get(k)) for k in ("type", "code", "status")) if v}
    for detail in items(source.get("details")):
        reason = text(obj(detail).get("reason"))
        if reason:
            codes.add(reason.lower())
    codes.discard("error")
    return ErrorBody(message.strip(), frozenset(codes))


def _code(value: JsonValue) -> str:
    # Codes are strings, except vLLM's numeric "code": 400, which says nothing new.
    return value if isinstance(value, str) else ""


def rule(error: type[ProviderError], *statuses: int, codes: tuple[str, ...] = (),
         markers: tuple[str, ...] = ()) -> ErrorRule:
    """An `ErrorRule` written compactly, for table literals."""
    return ErrorRule(error, frozenset(statuses), frozenset(codes), markers)


def status_error_class(status: int) -> type[ProviderError]:
    """The class for a bare HTTP status, when no table rule matched."""
    if status in (401, 403):
        return ProviderAuthError
    if status == 429:
        return ProviderRateLimitError
    if status == 408 or status >= 500 or status == 0:
        # 0 is an error reported inside a 200 stream: the provider failed mid-answer.
        return ProviderServerError
    if 400 <= status < 500:
        return ProviderRejectedError
    return ProviderServerError


def map_with_table(provider: str, status: int, body: ErrorBody, headers: Mapping[str, str],
                   table: tuple[ErrorRule, ...]) -> ProviderError:
    """Classify one provider error with a table, falling back to the status."""
    error_class = next((r.error for r in table if r.matches(status, body)), None)
    if error_class is None:
        error_class = status_error_class(status)
    where = f"HTTP {status}" if status else "stream error"
    detail = scrub(body.message) or "no error message"
    return error_class(provider, f"{where}: {detail}", status_code=status,
                       retry_after_s=parse_retry_after(headers))


def table_mapper(table: tuple[ErrorRule, ...]) -> ErrorMapper:
    """A provider's `map_error`: its error body (or in-stream error) parsed, then classified
    with its table."""
    def map_error(provider: str, status: int, body_text: str,
                  headers: Mapping[str, str]) -> ProviderError:
        return map_with_table(provider, status, parse_error_body(body_text), headers, table)

    return map_error


def scrub(message: str) -> str:
    """A provider message made safe to show: key-shaped tokens masked, length capped."""
    cleaned = _KEYLIKE.sub("[redacted]", " ".join(message.split()))
    if len(cleaned) > _MAX_MESSAGE:
        cleaned = cleaned[: _MAX_MESSAGE - 3] + "..."
    return cleaned


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    # aiohttp's headers are case-insensitive already; plain dicts (tests, fakes) are not.
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or HTTP-date).

    OpenAI and Anthropic send `retry-after-ms` alongside `retry-after`; the millisecond
    one is more precise, so it wins (RFC 9110 §10.2.3 defines only Retry-After).
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        seconds = _number(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    return _http_date_delay(value, time.time() if now is None else now)


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number < 0 or number == float("inf"):
        return None
    return number


def _http_date_delay(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
