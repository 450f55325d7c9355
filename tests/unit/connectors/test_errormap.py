"""Shared error-table machinery: Retry-After parsing, body parsing, status fallback."""

from __future__ import annotations

import email.utils

import pytest

from provider_router.connectors.errormap import (
    ErrorBody,
    map_with_table,
    parse_error_body,
    parse_retry_after,
    rule,
    scrub,
    status_error_class,
)
from provider_router.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderRateLimitError,
    ProviderRejectedError,
    ProviderServerError,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
    ({"Retry-After": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
    ({"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # in the past
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "-3"}, None),
    ({"retry-after-ms": "junk", "retry-after": "2"}, 2.0),
    ({}, None),
])
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize(("status", "cls"), [
    (401, ProviderAuthError), (403, ProviderAuthError), (429, ProviderRateLimitError),
    (408, ProviderServerError), (500, ProviderServerError), (529, ProviderServerError),
    (0, ProviderServerError), (400, ProviderRejectedError), (404, ProviderRejectedError),
    (422, ProviderRejectedError), (302, ProviderServerError),
])
def test_status_fallback(status: int, cls: type) -> None:
    assert status_error_class(status) is cls


@pytest.mark.parametrize(("text", "message", "codes"), [
    ('{"error": {"message": "m", "type": "invalid_request_error", "code": "x_y"}}', "m",
     {"invalid_request_error", "x_y"}),
    ('{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
     "Overloaded", {"overloaded_error"}),
    ('{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT", "details":'
     ' [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}',
     "bad", {"invalid_argument", "api_key_invalid"}),
    ('{"error": "model not found"}', "model not found", set()),
    ('{"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}',
     "too long", {"badrequesterror"}),
    ('{"detail": "Not Found"}', "Not Found", set()),
    ("<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>", set()),
])
def test_parse_error_body_shapes(text: str, message: str, codes: set[str]) -> None:
    body = parse_error_body(text)
    assert body.message == message
    assert body.codes == frozenset(codes)


def test_first_matching_rule_wins_and_carries_retry_after() -> None:
    table = (rule(ContextLengthError, 400, markers=("too long",)),
             rule(ProviderServerError, codes=("weird",)))
    error = map_with_table("p", 400, ErrorBody("Prompt TOO LONG", frozenset({"weird"})),
                           {"retry-after": "3"}, table)
    assert type(error) is ContextLengthError
    assert error.retry_after_s == 3.0
    assert error.status_code == 400
    assert error.message == "p: HTTP 400: Prompt TOO LONG"


def test_all_criteria_of_a_rule_must_match() -> None:
    table = (rule(ContextLengthError, 400, codes=("a",), markers=("m",)),)
    assert type(map_with_table("p", 400, ErrorBody("m", frozenset({"b"})), {}, table)) is (
        ProviderRejectedError)
    assert type(map_with_table("p", 413, ErrorBody("m", frozenset({"a"})), {}, table)) is (
        ProviderRejectedError)


def test_scrub_masks_key_shaped_tokens_and_caps_length() -> None:
    text = scrub("Incorrect API key provided: sk-proj-abc123****wxyz. And AIzaSyA1234567890abc")
    assert "sk-proj" not in text and "AIza" not in text
    assert text.count("[redacted]") == 2
    assert len(scrub("x" * 1000)) == 300
