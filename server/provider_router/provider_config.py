"""The `[[providers]]` tables of the config file → validated ProviderSpecs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from provider_router.config_values import Table, as_table, boolean, number, string_list, text
from provider_router.domain import (
    Capability,
    CommandOptions,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    ProviderTimeouts,
    Secret,
)
from provider_router.errors import ConfigError
from provider_router.validation import validate_provider_spec


def _enum_list(t: Table, name: str) -> frozenset[Capability]:
    values = string_list(t, name)
    known = {c.value for c in Capability}
    for value in values:
        if value not in known:
            raise ConfigError(t.key(name), value, f"capabilities from {', '.join(sorted(known))}")
    return frozenset(Capability(v) for v in values)


def _optional_number(t: Table, name: str) -> float | None:
    return None if t.get(name) is None else number(t, name, None, low=0.0)


def _model(value: object, key: str) -> ModelSpec:
    if isinstance(value, str):
        return ModelSpec(name=value)
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a model name or a table with name, input_per_mtok, ...")
    t = Table(key, value)
    model = ModelSpec(
        name=text(t, "name", ""),
        input_per_mtok=_optional_number(t, "input_per_mtok"),
        output_per_mtok=_optional_number(t, "output_per_mtok"),
        context_window=int(number(t, "context_window", 0, low=0, integer=True)),
        capabilities=_enum_list(t, "capabilities"),
    )
    t.done()
    return model


def _timeouts(t: Table) -> ProviderTimeouts:
    timeouts = ProviderTimeouts(
        connect=_optional_number(t, "connect"),
        first_token=_optional_number(t, "first_token"),
        idle=_optional_number(t, "idle"),
        total=_optional_number(t, "total"),
    )
    t.done()
    return timeouts


def _command(t: Table) -> CommandOptions | None:
    if not t.values:
        return None
    options = CommandOptions(argv=string_list(t, "argv"),
                             required_envs=string_list(t, "required_envs"),
                             read_output_file=boolean(t, "read_output_file", False))
    t.done()
    return options


def _mock(t: Table) -> MockOptions | None:
    if not t.values:
        return None
    options = MockOptions(latency=number(t, "latency", 0.0, low=0.0),
                          chunk_count=int(number(t, "chunk_count", 4, low=1, integer=True)),
                          reply=text(t, "reply", ""),
                          fail_status=int(number(t, "fail_status", 0, low=0, integer=True)))
    t.done()
    return options


def _headers(t: Table) -> dict[str, str]:
    value = t.get("headers")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(t.key("headers"), value, "a table of string values")
    return {str(k): str(v) for k, v in value.items()}


def _kind(t: Table) -> ProviderKind:
    value = text(t, "kind", "")
    try:
        return ProviderKind(value)
    except ValueError:
        raise ConfigError(t.key("kind"), value,
                          f"one of {', '.join(k.value for k in ProviderKind)}") from None


def _models(t: Table) -> tuple[ModelSpec, ...]:
    models = t.get("models") or []
    if not isinstance(models, list):
        raise ConfigError(t.key("models"), models, "a list of model names or tables")
    return tuple(_model(m, f"{t.key('models')}[{i}]") for i, m in enumerate(models))


def parse_provider(t: Table) -> ProviderSpec:
    """One `[[providers]]` table → ProviderSpec (not yet validated)."""
    key = text(t, "api_key", "")
    capabilities = _enum_list(t, "capabilities")
    spec = ProviderSpec(
        name=text(t, "name", ""),
        kind=_kind(t),
        base_url=text(t, "base_url", ""),
        api_key_env=text(t, "api_key_env", ""),
        api_key=Secret(key) if key else None,
        models=_models(t),
        capabilities=capabilities or frozenset({Capability.CHAT, Capability.STREAMING}),
        priority=int(number(t, "priority", 0, integer=True)),
        weight=number(t, "weight", 1.0),
        max_concurrent=int(number(t, "max_concurrent", 0, integer=True)),
        rate_limit_rpm=int(number(t, "rate_limit_rpm", 0, integer=True)),
        rate_limit_tpm=int(number(t, "rate_limit_tpm", 0, integer=True)),
        timeouts=_timeouts(as_table(t.values, "timeouts", t.key("timeouts"))),
        labels=string_list(t, "labels"),
        enabled=boolean(t, "enabled", True),
        headers=_headers(t),
        command=_command(as_table(t.values, "command", t.key("command"))),
        mock=_mock(as_table(t.values, "mock", t.key("mock"))),
    )
    for name in ("timeouts", "command", "mock"):
        t.get(name)
    t.done()
    return spec


def parse_providers(raw: object) -> tuple[ProviderSpec, ...]:
    """Every `[[providers]]` table, validated; names must be unique."""
    if not isinstance(raw, list):
        raise ConfigError("providers", raw, "an array of tables ([[providers]])")
    specs: list[ProviderSpec] = []
    seen: set[str] = set()
    for i, value in enumerate(raw):
        path = f"providers[{i}]"
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "a table")
        spec = parse_provider(Table(path, value))
        for violation in validate_provider_spec(spec):
            field = violation.field.removeprefix("provider")
            raise ConfigError(f"{path}{field}", _field_value(value, field), violation.description)
        if spec.name in seen:
            raise ConfigError(f"{path}.name", spec.name, "a name not used by another provider")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _field_value(table: Mapping[str, object], field: str) -> object:
    """The raw value at a `.a.b[2].c` path, for the error message (None when not found)."""
    current: object = table
    for part in field.replace("[", ".").replace("]", "").strip(".").split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def load_provider_file(path: Path) -> ProviderSpec:
    """One provider from a TOML file: top-level keys, or a single [[providers]] table."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("file", str(path), "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("file", str(path), f"valid TOML ({exc})") from None
    tables = raw.get("providers", [raw])
    if not isinstance(tables, list) or len(tables) != 1:
        raise ConfigError("providers", tables, "exactly one provider table")
    return parse_providers(tables)[0]
