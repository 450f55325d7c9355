"""Typed configuration: one TOML file, every value overridable by PROVIDER_ROUTER_* variables.

Override rule: `PROVIDER_ROUTER_<SECTION>_<KEY>` sets `[section] key`, e.g.
`PROVIDER_ROUTER_SERVER_LISTEN=0.0.0.0:6000` or `PROVIDER_ROUTER_ROUTING_ENABLED=false`. The
value is read as a TOML value when it parses as one (numbers, booleans, arrays), else as a
string. Everything is validated at start; a bad value raises ConfigError naming the key, the
value and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from provider_router.cache.settings import CacheSettings, parse_cache_settings
from provider_router.config_values import (
    Table,
    as_table,
    boolean,
    choice,
    number,
    string_list,
    text,
)
from provider_router.connectors.egress import IpNetwork, parse_networks
from provider_router.connectors.factory import ConnectorSettings
from provider_router.connectors.proxy import BadProxySetting, ProxySettings
from provider_router.domain import ProviderSpec, ProviderTimeouts
from provider_router.errors import ConfigError
from provider_router.gc_pacer import DEFAULT_FREEZE_INTERVAL_S, DEFAULT_SWEEP_INTERVAL_S
from provider_router.provider_config import parse_providers
from provider_router.resilience.settings import ResilienceSettings, parse_resilience_settings
from provider_router.routing.settings import RoutingSettings, parse_routing_settings
from provider_router.server_tls import TlsFiles, parse_tls_files
from provider_router.state.urls import check_redis_url, is_redis_url, redacted
from provider_router.tenant_config import parse_tenants
from provider_router.tenants import Tenant

ENV_PREFIX = "PROVIDER_ROUTER_"
# Variables of the prefix that are not config overrides (CLI client settings).
RESERVED_ENV = frozenset({"PROVIDER_ROUTER_TARGET", "PROVIDER_ROUTER_API_KEY",
                          "PROVIDER_ROUTER_CONFIG", "PROVIDER_ROUTER_ADMIN_API_KEY",
                          # [auth]'s default key-list variables, read where they are used.
                          "PROVIDER_ROUTER_CLIENT_KEYS", "PROVIDER_ROUTER_ADMIN_KEYS"})
# Kubernetes injects service links for a Service named provider-router into every pod:
# PROVIDER_ROUTER_SERVICE_HOST, PROVIDER_ROUTER_PORT_50051_TCP_ADDR, ... They are not overrides.
K8S_SERVICE_LINK = re.compile(
    r"^PROVIDER_ROUTER_(SERVICE_(HOST|PORT\w*)|PORT(_\d+_(TCP|UDP|SCTP)\w*)?)$")
SECTIONS = ("server", "logging", "state", "auth", "connectors", "metrics", "routing",
            "resilience", "autoregister", "cache")
DEFAULT_REGISTRY_FILE = "~/.local/state/provider-router/registry.json"
# The largest request the server accepts. Anthropic's Messages API, the most generous of the
# hosted providers, takes request bodies up to 32 MB (images inline, base64); a larger
# request could not be served by anyone, and gRPC's own 4 MiB default would refuse vision
# requests every provider accepts.
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """[server]: where to listen and how to shut down."""

    listen: str = "0.0.0.0:50051"
    drain_delay_s: float = 2.0
    grace_s: float = 10.0
    default_deadline_s: float = 120.0
    workers: int = 1
    reflection: bool = True
    max_concurrent_rpcs: int = 0
    gc_freeze_interval_s: float = DEFAULT_FREEZE_INTERVAL_S
    gc_sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    # TLS (and mTLS with a client CA) when set; see server_tls.py and api/tls.py.
    tls: TlsFiles | None = None
    tls_reload_interval_s: float = 10.0
    # A plaintext port that serves only grpc.health.v1, for probes that cannot speak TLS.
    health_listen: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """[logging]: level and format (text or json)."""

    level: str = "info"
    format: str = "text"
    access: bool = True     # one JSON access line per RPC on stderr (telemetry/access.py)
    content: bool = False   # prompt and answer text in access lines


@dataclass(frozen=True, slots=True)
class StateSettings:
    """[state]: the state store URI, where runtime registrations persist, and Redis options."""

    url: str = "memory://"
    registry_file: Path | None = None
    # Redis only: the env var holding the password (never the password itself).
    password_env: str = ""
    # Replicas sharing the backend: local fallback limits are limit / replicas while it is down.
    replicas: int = 1
    # The hot path's budget for one Redis round trip (seconds).
    timeout_s: float = 0.005
    key_prefix: str = "provider-router:"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """[auth]: API keys read from environment variables (comma-separated); none = open."""

    client_keys_env: str = "PROVIDER_ROUTER_CLIENT_KEYS"
    admin_keys_env: str = "PROVIDER_ROUTER_ADMIN_KEYS"
    # Env vars a runtime Register may name as api_key_env (globs); see routing/key_policy.py.
    register_key_envs: tuple[str, ...] = ("*_API_KEY",)
    # Register's SSRF guard (connectors/egress.py): private ranges a runtime-registered
    # provider may reach, whether loopback is one, and whether command providers may be
    # registered at all.
    allowed_upstream_networks: tuple[IpNetwork, ...] = ()
    allow_loopback_upstream: bool = True
    register_command_providers: bool = False
    # A TOML file of [[tenants]] tables (key hashes, limits, budgets); see tenant_config.py.
    tenants_file: Path | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """[metrics]: Prometheus exposition port (0 = off) and bind address."""

    port: int = 0
    host: str = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    state: StateSettings = StateSettings()
    auth: AuthSettings = AuthSettings()
    metrics: MetricsSettings = MetricsSettings()
    connectors: ConnectorSettings = field(default_factory=ConnectorSettings)
    routing: RoutingSettings = field(default_factory=lambda: parse_routing_settings({}))
    resilience: ResilienceSettings = field(default_factory=ResilienceSettings)
    providers: tuple[ProviderSpec, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    autoregister: bool = True
    source: str = "defaults"
    cache: CacheSettings = field(default_factory=CacheSettings)


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate the configuration."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, object] = {}
    if path is not None:
        raw = _read_toml(path)
    apply_env_overrides(raw, env)
    return build_config(raw, env, source=str(path) if path else "defaults")


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "an existing TOML file (no such file)") from None
    except IsADirectoryError:
        raise ConfigError("--config", str(path), "a TOML file, not a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"valid TOML ({exc})") from None


def _env_value(value: str) -> object:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def apply_env_overrides(raw: dict[str, object], env: Mapping[str, str]) -> None:
    """Fold PROVIDER_ROUTER_<SECTION>_<KEY> variables into the raw TOML tables."""
    for name, value in env.items():
        if (not name.startswith(ENV_PREFIX) or name in RESERVED_ENV
                or K8S_SERVICE_LINK.match(name)):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(name, value, f"PROVIDER_ROUTER_<SECTION>_<KEY> with SECTION one "
                                           f"of {', '.join(s.upper() for s in SECTIONS)}")
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, table, "a table")
        table[rest[len(section) + 1:]] = _env_value(value)


def _server(t: Table) -> ServerSettings:
    d = ServerSettings()
    settings = ServerSettings(
        listen=text(t, "listen", d.listen),
        drain_delay_s=number(t, "drain_delay", d.drain_delay_s, low=0.0),
        grace_s=number(t, "grace", d.grace_s, low=0.0),
        default_deadline_s=number(t, "default_deadline", d.default_deadline_s, low=0.001),
        workers=int(number(t, "workers", d.workers, low=1, integer=True)),
        reflection=boolean(t, "reflection", d.reflection),
        max_concurrent_rpcs=int(number(t, "max_concurrent_rpcs", d.max_concurrent_rpcs, low=0,
                                           integer=True)),
        gc_freeze_interval_s=number(t, "gc_freeze_interval", d.gc_freeze_interval_s, low=0.0),
        gc_sweep_interval_s=number(t, "gc_sweep_interval", d.gc_sweep_interval_s, low=1.0),
        tls=parse_tls_files(t),
        tls_reload_interval_s=number(t, "tls_reload_interval", d.tls_reload_interval_s,
                                     low=0.0),
        health_listen=text(t, "health_listen", d.health_listen),
        max_message_bytes=int(number(t, "max_message_bytes", d.max_message_bytes, low=1024,
                                     high=2**31 - 1, integer=True)),
    )
    check_listen(settings.listen)
    if settings.health_listen:
        check_listen(settings.health_listen, "server.health_listen")
    t.done()
    return settings


def check_listen(listen: str, key: str = "server.listen") -> None:
    """ConfigError unless `listen` is HOST:PORT."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, listen, "HOST:PORT with a port from 0 to 65535")


def _connectors(t: Table, env: Mapping[str, str]) -> ConnectorSettings:
    d = ConnectorSettings()
    dt = d.default_timeouts
    settings = ConnectorSettings(
        default_timeouts=ProviderTimeouts(
            connect=number(t, "connect_timeout", dt.connect, low=0.001),
            first_token=number(t, "first_token_timeout", dt.first_token, low=0.001),
            idle=number(t, "idle_timeout", dt.idle, low=0.001),
            total=number(t, "total_timeout", dt.total, low=0.001),
        ),
        anthropic_max_tokens=int(number(t, "anthropic_max_tokens", d.anthropic_max_tokens,
                                        low=1, integer=True)),
        anthropic_version=text(t, "anthropic_version", d.anthropic_version),
        env=env,
        proxies=_proxies(env),
    )
    t.done()
    return settings


def _proxies(env: Mapping[str, str]) -> ProxySettings | None:
    try:
        return ProxySettings.from_env(env)
    except BadProxySetting as exc:
        # The value is not shown: a proxy URL may carry a password.
        raise ConfigError(exc.variable, "(not shown)", exc.expected) from None


def _state(t: Table, env: Mapping[str, str]) -> StateSettings:
    d = StateSettings()
    url = text(t, "url", d.url)
    if is_redis_url(url):
        check_redis_url(url, "state.url")
    elif not url.startswith("memory://"):
        raise ConfigError("state.url", redacted(url),
                          "a memory:// or redis:// (rediss:// for TLS) URI")
    file_value = text(t, "registry_file", DEFAULT_REGISTRY_FILE)
    registry_file = None if file_value in ("", "none") else Path(file_value).expanduser()
    password_env = text(t, "password_env", d.password_env)
    if password_env and not env.get(password_env):
        raise ConfigError("state.password_env", password_env,
                          "the name of a set, non-empty environment variable")
    key_prefix = text(t, "key_prefix", d.key_prefix)
    if not key_prefix or any(c.isspace() for c in key_prefix):
        raise ConfigError("state.key_prefix", key_prefix, "a non-empty string without spaces")
    settings = StateSettings(
        url=url, registry_file=registry_file, password_env=password_env,
        replicas=int(number(t, "replicas", d.replicas, low=1, integer=True)),
        timeout_s=number(t, "timeout", d.timeout_s, low=0.0001, high=10.0),
        key_prefix=key_prefix)
    t.done()
    return settings


def _networks(t: Table, name: str) -> tuple[IpNetwork, ...]:
    values = string_list(t, name)
    try:
        return parse_networks(values)
    except ValueError as exc:
        raise ConfigError(t.key(name), list(values), f"a list of CIDRs ({exc})") from None
def _optional_path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


def _mapping(raw: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "a table")
    return value


def build_config(raw: Mapping[str, object], env: Mapping[str, str], source: str) -> Config:
    """Validate raw TOML tables into a Config."""
    known = set(SECTIONS) | {"providers", "tenants"}
    for key in raw:
        if key not in known:
            raise ConfigError(key, raw[key], f"one of the sections {', '.join(sorted(known))}")
    logging_t = as_table(raw, "logging")
    log = LoggingSettings(
        level=choice(logging_t, "level", "info", ("debug", "info", "warning", "error")),
        format=choice(logging_t, "format", "text", ("text", "json")),
        access=boolean(logging_t, "access", True),
        content=boolean(logging_t, "content", False),
    )
    logging_t.done()
    auth_t = as_table(raw, "auth")
    default_auth = AuthSettings()
    auth = AuthSettings(
        client_keys_env=text(auth_t, "client_keys_env", default_auth.client_keys_env),
        admin_keys_env=text(auth_t, "admin_keys_env", default_auth.admin_keys_env),
        register_key_envs=(string_list(auth_t, "register_key_envs")
                           if auth_t.values.get("register_key_envs") is not None
                           else default_auth.register_key_envs),
        allowed_upstream_networks=_networks(auth_t, "allowed_upstream_networks"),
        allow_loopback_upstream=boolean(auth_t, "allow_loopback_upstream", True),
        register_command_providers=boolean(auth_t, "register_command_providers", False),
        tenants_file=_optional_path(text(auth_t, "tenants_file", "")))
    auth_t.done()
    metrics_t = as_table(raw, "metrics")
    metrics = MetricsSettings(
        port=int(number(metrics_t, "port", 0, low=0, high=65535, integer=True)),
        host=text(metrics_t, "host", "0.0.0.0"))
    metrics_t.done()
    auto_t = as_table(raw, "autoregister")
    autoregister = boolean(auto_t, "enabled", True)
    auto_t.done()
    routing_raw = _mapping(raw, "routing")
    return Config(
        server=_server(as_table(raw, "server")),
        logging=log,
        state=_state(as_table(raw, "state"), env),
        auth=auth,
        metrics=metrics,
        connectors=_connectors(as_table(raw, "connectors"), env),
        routing=parse_routing_settings(routing_raw),
        resilience=parse_resilience_settings(_mapping(raw, "resilience")),
        providers=parse_providers(raw.get("providers", [])),
        tenants=parse_tenants(raw.get("tenants"), auth.tenants_file),
        autoregister=autoregister,
        source=source,
        cache=parse_cache_settings(raw),
    )
