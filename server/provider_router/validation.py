"""ProviderSpec validation: one FieldViolation per problem, with a path like
`provider.models[2].name`, so Register (INVALID_ARGUMENT) and the config loader can say exactly
what is wrong. Kinds and capabilities need no check here: the domain enums already reject
unknown values when a spec is converted from protobuf or TOML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from provider_router.domain import (
    CommandOptions,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    ProviderTimeouts,
)
from provider_router.errors import FieldViolation

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A provider name: lowercase letters, digits, '_' and '-', 1 to 63 characters."""

PRIORITY_RANGE = (-1000, 1000)
WEIGHT_RANGE = (0.0, 1000.0)
MAX_MODELS = 512
MAX_MODEL_NAME = 256
MAX_LABELS = 64
MAX_LABEL = 128
MAX_HEADERS = 64
MAX_HEADER_VALUE = 8192
MAX_URL = 2048
MAX_SECRET = 8192
MAX_ARGV = 256
MAX_ARG = 4096
MAX_CONCURRENT = 1_000_000
MAX_RPM = 1_000_000_000
MAX_TPM = 1_000_000_000_000
MAX_CONTEXT_WINDOW = 100_000_000
MAX_PRICE_PER_MTOK = 1_000_000.0
MAX_TIMEOUT_S = 86_400.0

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_MODEL_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+")
_ROOT = "provider"


class _Violations:
    """Collects violations in the order they are found."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(f"{_ROOT}.{field}", description))

    def number_in(self, field: str, value: float, low: float, high: float) -> None:
        if not (math.isfinite(value) and low <= value <= high):
            self.add(field, f"must be between {low:g} and {high:g}")

    def strings(self, field: str, values: Iterable[str], pattern: re.Pattern[str],
                what: str) -> None:
        for index, value in enumerate(values):
            if not pattern.fullmatch(value):
                self.add(f"{field}[{index}]", f"must be {what}")


def validate_provider_spec(spec: ProviderSpec) -> tuple[FieldViolation, ...]:
    """Every problem with the spec, one violation each; empty when it is valid."""
    v = _Violations()
    if not NAME_PATTERN.fullmatch(spec.name):
        v.add("name", "must match [a-z0-9][a-z0-9_-]{0,62}")
    _check_endpoint(v, spec)
    _check_models(v, spec.models)
    _check_limits(v, spec)
    _check_timeouts(v, spec.timeouts)
    _check_labels_and_headers(v, spec)
    _check_command(v, spec.kind, spec.command)
    _check_mock(v, spec.kind, spec.mock)
    return tuple(v.items)


def _check_endpoint(v: _Violations, spec: ProviderSpec) -> None:
    if spec.base_url:
        parts = urlsplit(spec.base_url)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or len(spec.base_url) > MAX_URL or any(c.isspace() for c in spec.base_url)):
            v.add("base_url", f"must be an absolute http(s) URL of at most {MAX_URL} characters")
    elif spec.kind is ProviderKind.OPENAI_COMPATIBLE:
        v.add("base_url", "is required for an openai_compatible provider")
    if spec.api_key_env and not _ENV_NAME.fullmatch(spec.api_key_env):
        v.add("api_key_env", "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if spec.api_key is not None and len(spec.api_key.reveal()) > MAX_SECRET:
        v.add("api_key", f"must be at most {MAX_SECRET} characters")


def _check_models(v: _Violations, models: tuple[ModelSpec, ...]) -> None:
    if not models:
        v.add("models", "must list at least one model")
    elif len(models) > MAX_MODELS:
        v.add("models", f"must list at most {MAX_MODELS} models")
    seen: set[str] = set()
    for index, model in enumerate(models[:MAX_MODELS]):
        field = f"models[{index}]"
        if not _MODEL_NAME.fullmatch(model.name) or len(model.name) > MAX_MODEL_NAME:
            v.add(f"{field}.name", f"must be 1 to {MAX_MODEL_NAME} characters without spaces")
        elif model.name in seen:
            v.add(f"{field}.name", f"duplicates model {model.name!r}")
        seen.add(model.name)
        for price in ("input_per_mtok", "output_per_mtok"):
            value: float | None = getattr(model, price)
            if value is not None:
                v.number_in(f"{field}.{price}", value, 0.0, MAX_PRICE_PER_MTOK)
        if not 0 <= model.context_window <= MAX_CONTEXT_WINDOW:
            v.add(f"{field}.context_window", f"must be between 0 and {MAX_CONTEXT_WINDOW}")


def _check_limits(v: _Violations, spec: ProviderSpec) -> None:
    v.number_in("priority", spec.priority, *PRIORITY_RANGE)
    v.number_in("weight", spec.weight, *WEIGHT_RANGE)
    v.number_in("max_concurrent", spec.max_concurrent, 0, MAX_CONCURRENT)
    v.number_in("rate_limit_rpm", spec.rate_limit_rpm, 0, MAX_RPM)
    v.number_in("rate_limit_tpm", spec.rate_limit_tpm, 0, MAX_TPM)


def _check_timeouts(v: _Violations, timeouts: ProviderTimeouts) -> None:
    for phase in ("connect", "first_token", "idle", "total"):
        value: float | None = getattr(timeouts, phase)
        if value is not None and not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
            v.add(f"timeouts.{phase}", f"must be positive and at most {MAX_TIMEOUT_S:g} seconds")


def _check_labels_and_headers(v: _Violations, spec: ProviderSpec) -> None:
    if len(spec.labels) > MAX_LABELS:
        v.add("labels", f"must have at most {MAX_LABELS} labels")
    for index, label in enumerate(spec.labels[:MAX_LABELS]):
        if not 0 < len(label) <= MAX_LABEL:
            v.add(f"labels[{index}]", f"must be 1 to {MAX_LABEL} characters")
    if len(spec.headers) > MAX_HEADERS:
        v.add("headers", f"must have at most {MAX_HEADERS} headers")
    for name, value in list(spec.headers.items())[:MAX_HEADERS]:
        if not _HEADER_NAME.fullmatch(name):
            v.add(f"headers[{name!r}]", "must be a valid HTTP header name")
        elif len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\x00"):
            v.add(f"headers[{name!r}]",
                  f"value must be at most {MAX_HEADER_VALUE} characters, without line breaks")


def _check_command(v: _Violations, kind: ProviderKind, command: CommandOptions | None) -> None:
    if kind is not ProviderKind.COMMAND:
        if command is not None:
            v.add("command", "is only for kind command")
        return
    if command is None or not command.argv or not command.argv[0]:
        v.add("command.argv", "is required for kind command: the program and its arguments")
        return
    if len(command.argv) > MAX_ARGV or any(len(a) > MAX_ARG for a in command.argv):
        v.add("command.argv", f"must have at most {MAX_ARGV} arguments of {MAX_ARG} characters")
    v.strings("command.required_envs", command.required_envs, _ENV_NAME,
              "an environment variable name")


def _check_mock(v: _Violations, kind: ProviderKind, mock: MockOptions | None) -> None:
    if mock is None:
        return
    if kind is not ProviderKind.MOCK:
        v.add("mock", "is only for kind mock")
        return
    v.number_in("mock.latency", mock.latency, 0.0, MAX_TIMEOUT_S)
    v.number_in("mock.chunk_count", mock.chunk_count, 1, 10_000)
    if mock.fail_status != 0 and not 100 <= mock.fail_status <= 599:
        v.add("mock.fail_status", "must be 0 (never fail) or an HTTP status 100 to 599")
