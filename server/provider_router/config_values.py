"""Typed readers for raw TOML tables that name the exact key on every error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provider_router.errors import ConfigError


class Table:
    """A raw TOML table with its dotted path; remembers which keys were read."""

    def __init__(self, path: str, values: Mapping[str, object]) -> None:
        self.path = path
        self.values = values
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        """The dotted path of a key in this table."""
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str) -> object | None:
        """The raw value of a key, or None when absent."""
        self._read.add(name)
        return self.values.get(name)

    def done(self) -> None:
        """Reject keys nobody read: a typo must not be silently ignored."""
        for name in self.values:
            if name not in self._read:
                raise ConfigError(self.key(name), self.values[name],
                                  f"a known key of [{self.path}] (unknown key)")


def as_table(raw: Mapping[str, object], name: str, path: str | None = None) -> Table:
    """The sub-table `name` of raw (empty when absent)."""
    value = raw.get(name, {})
    full = path or name
    if not isinstance(value, Mapping):
        raise ConfigError(full, value, "a table")
    return Table(full, value)


def text(t: Table, name: str, default: str) -> str:
    """A string value."""
    value = t.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(t.key(name), value, "a string")
    return value


def boolean(t: Table, name: str, default: bool) -> bool:
    """A boolean value."""
    value = t.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(t.key(name), value, "true or false")
    return value


def number(t: Table, name: str, default: float | None, *, low: float | None = None,
           high: float | None = None, integer: bool = False) -> float:
    """A number within [low, high]; integers only when `integer`."""
    value = t.get(name)
    if value is None:
        if default is None:
            raise ConfigError(t.key(name), None, "a number (required)")
        return default
    kind = "an integer" if integer else "a number"
    valid_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not valid_type:
        raise ConfigError(t.key(name), value, kind)
    assert isinstance(value, int | float)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = [f">= {low:g}"] if low is not None else []
        bounds += [f"<= {high:g}"] if high is not None else []
        raise ConfigError(t.key(name), value, f"{kind} {' and '.join(bounds)}")
    return float(value)


def choice(t: Table, name: str, default: str, allowed: Sequence[str]) -> str:
    """A string from a fixed set."""
    value = text(t, name, default)
    if value not in allowed:
        raise ConfigError(t.key(name), value, f"one of {', '.join(allowed)}")
    return value


def string_list(t: Table, name: str) -> tuple[str, ...]:
    """A list of strings (empty when absent)."""
    value = t.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(t.key(name), value, "a list of strings")
    return tuple(value)
