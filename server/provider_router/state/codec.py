"""ProviderSpec <-> JSON, for every state backend (a file today, Redis later).

The API key is written only when the caller asks (a store that must survive a restart needs
it; anything shown to people must never carry it). Decoding is strict: a malformed document
raises CodecError naming the JSON path, rather than registering half a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from provider_router.domain import (
    Capability,
    CommandOptions,
    JsonValue,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    ProviderTimeouts,
    Secret,
)

T = TypeVar("T")
_TIMEOUTS = ("connect", "first_token", "idle", "total")


class CodecError(ValueError):
    """A stored document is not a valid provider spec; the message names the JSON path."""


def encode_spec(spec: ProviderSpec, *, include_secret: bool) -> dict[str, JsonValue]:
    """The spec as a JSON object; `api_key` only when `include_secret`."""
    doc: dict[str, JsonValue] = {
        "name": spec.name, "kind": spec.kind.value, "base_url": spec.base_url,
        "api_key_env": spec.api_key_env,
        "models": [_encode_model(m) for m in spec.models],
        "capabilities": _texts(sorted(c.value for c in spec.capabilities)),
        "priority": spec.priority, "weight": spec.weight,
        "max_concurrent": spec.max_concurrent, "rate_limit_rpm": spec.rate_limit_rpm,
        "rate_limit_tpm": spec.rate_limit_tpm,
        "timeouts": {k: getattr(spec.timeouts, k) for k in _TIMEOUTS},
        "labels": _texts(spec.labels), "enabled": spec.enabled, "headers": dict(spec.headers),
    }
    if include_secret and spec.api_key is not None:
        doc["api_key"] = spec.api_key.reveal()
    if spec.command is not None:
        doc["command"] = {"argv": _texts(spec.command.argv),
                          "required_envs": _texts(spec.command.required_envs),
                          "read_output_file": spec.command.read_output_file}
    if spec.mock is not None:
        doc["mock"] = {"latency": spec.mock.latency, "chunk_count": spec.mock.chunk_count,
                       "reply": spec.mock.reply, "fail_status": spec.mock.fail_status}
    return doc


def _texts(values: Iterable[str]) -> list[JsonValue]:
    return [*values]


def _encode_model(model: ModelSpec) -> dict[str, JsonValue]:
    return {"name": model.name, "input_per_mtok": model.input_per_mtok,
            "output_per_mtok": model.output_per_mtok, "context_window": model.context_window,
            "capabilities": _texts(sorted(c.value for c in model.capabilities))}


class _Reader:
    """Typed access to one JSON object, naming the path of anything malformed."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise CodecError(f"{path}: expected an object")
        self.doc: Mapping[str, object] = value
        self.path = path

    def _get(self, name: str, check: Callable[[object], bool], what: str, default: T) -> T:
        value = self.doc.get(name)
        if value is None:
            return default
        if not check(value):
            raise CodecError(f"{self.path}.{name}: expected {what}")
        return value  # type: ignore[return-value]  # `check` proved the type

    def text(self, name: str, default: str = "") -> str:
        return self._get(name, lambda v: isinstance(v, str), "a string", default)

    def integer(self, name: str, default: int = 0) -> int:
        return self._get(name, _is_int, "an integer", default)

    def number(self, name: str, default: float | None) -> float | None:
        value = self._get(name, _is_number, "a number", default)
        return float(value) if value is not None else None

    def flag(self, name: str, default: bool) -> bool:
        return self._get(name, lambda v: isinstance(v, bool), "true or false", default)

    def texts(self, name: str) -> tuple[str, ...]:
        values: list[str] = self._get(name, _is_str_list, "a list of strings", [])
        return tuple(values)

    def items(self, name: str) -> list[_Reader]:
        values: list[object] = self._get(name, lambda v: isinstance(v, list), "a list", [])
        return [_Reader(v, f"{self.path}.{name}[{i}]") for i, v in enumerate(values)]

    def child(self, name: str) -> _Reader | None:
        value = self.doc.get(name)
        return None if value is None else _Reader(value, f"{self.path}.{name}")

    def capabilities(self, name: str) -> frozenset[Capability]:
        try:
            return frozenset(Capability(v) for v in self.texts(name))
        except ValueError as exc:
            raise CodecError(f"{self.path}.{name}: {exc}") from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def decode_spec(value: object, path: str = "provider") -> ProviderSpec:
    """A spec from its JSON object; CodecError naming the path when malformed."""
    r = _Reader(value, path)
    name = r.text("name")
    try:
        kind = ProviderKind(r.text("kind"))
    except ValueError as exc:
        raise CodecError(f"{path}.kind: {exc}") from exc
    key = r.text("api_key")
    headers = r.child("headers")
    spec = ProviderSpec(
        name=name, kind=kind, base_url=r.text("base_url"), api_key_env=r.text("api_key_env"),
        api_key=Secret(key) if key else None,
        models=tuple(_decode_model(m) for m in r.items("models")),
        priority=r.integer("priority"), weight=r.number("weight", 1.0) or 0.0,
        max_concurrent=r.integer("max_concurrent"), rate_limit_rpm=r.integer("rate_limit_rpm"),
        rate_limit_tpm=r.integer("rate_limit_tpm"), timeouts=_decode_timeouts(r.child("timeouts")),
        labels=r.texts("labels"), enabled=r.flag("enabled", True),
        headers={k: headers.text(k) for k in headers.doc} if headers else {},
        command=_decode_command(r.child("command")), mock=_decode_mock(r.child("mock")),
    )
    # Absent capabilities keep the domain default rather than a copy of it here.
    if "capabilities" in r.doc:
        spec = replace(spec, capabilities=r.capabilities("capabilities"))
    return spec


def _decode_model(r: _Reader) -> ModelSpec:
    return ModelSpec(name=r.text("name"), input_per_mtok=r.number("input_per_mtok", None),
                     output_per_mtok=r.number("output_per_mtok", None),
                     context_window=r.integer("context_window"),
                     capabilities=r.capabilities("capabilities"))


def _decode_timeouts(r: _Reader | None) -> ProviderTimeouts:
    if r is None:
        return ProviderTimeouts()
    connect, first, idle, total = (r.number(k, None) for k in _TIMEOUTS)
    return ProviderTimeouts(connect=connect, first_token=first, idle=idle, total=total)


def _decode_command(r: _Reader | None) -> CommandOptions | None:
    if r is None:
        return None
    return CommandOptions(argv=r.texts("argv"), required_envs=r.texts("required_envs"),
                          read_output_file=r.flag("read_output_file", False))


def _decode_mock(r: _Reader | None) -> MockOptions | None:
    if r is None:
        return None
    return MockOptions(latency=r.number("latency", 0.0) or 0.0,
                       chunk_count=r.integer("chunk_count", 4), reply=r.text("reply"),
                       fail_status=r.integer("fail_status"))
