"""Config loading: every kind of bad value names the key, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider_router.cli import main
from provider_router.config import load_config
from provider_router.domain import Capability, ProviderKind
from provider_router.errors import ConfigError

GOOD = """
[server]
listen = "127.0.0.1:6000"
drain_delay = 1.5

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "https://api.anthropic.com"
api_key_env = "ANTHROPIC_API_KEY"
models = ["claude-sonnet-4-5", { name = "claude-haiku-4", input_per_mtok = 1.0, output_per_mtok = 5.0 }]
capabilities = ["chat", "vision", "tools"]
priority = 10
weight = 1
max_concurrent = 64
rate_limit_rpm = 500
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_documented_provider_shape_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD), env={})
    assert config.server.listen == "127.0.0.1:6000"
    assert config.server.drain_delay_s == 1.5
    (spec,) = config.providers
    assert spec.kind is ProviderKind.ANTHROPIC
    assert [m.name for m in spec.models] == ["claude-sonnet-4-5", "claude-haiku-4"]
    assert spec.models[1].input_per_mtok == 1.0 and spec.models[1].output_per_mtok == 5.0
    assert spec.models[0].input_per_mtok is None
    assert spec.capabilities == {Capability.CHAT, Capability.VISION, Capability.TOOLS}
    assert (spec.priority, spec.max_concurrent, spec.rate_limit_rpm) == (10, 64, 500)


def test_env_overrides_any_value(tmp_path: Path) -> None:
    env = {"PROVIDER_ROUTER_SERVER_LISTEN": "0.0.0.0:7000",
           "PROVIDER_ROUTER_SERVER_DRAIN_DELAY": "3",
           "PROVIDER_ROUTER_LOGGING_FORMAT": "json"}
    config = load_config(_write(tmp_path, GOOD), env=env)
    assert config.server.listen == "0.0.0.0:7000"
    assert config.server.drain_delay_s == 3.0
    assert config.logging.format == "json"


def test_gc_pacing_defaults_and_overrides(tmp_path: Path) -> None:
    assert load_config(None, env={}).server.gc_freeze_interval_s == 0.25
    config = load_config(_write(tmp_path, GOOD), env={
        "PROVIDER_ROUTER_SERVER_GC_FREEZE_INTERVAL": "0",
        "PROVIDER_ROUTER_SERVER_GC_SWEEP_INTERVAL": "120"})
    assert (config.server.gc_freeze_interval_s, config.server.gc_sweep_interval_s) == (0.0, 120.0)


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('[server]\nlisten = 5', "server.listen", "a string"),
    ('[server]\nlisten = "nohost"', "server.listen", "HOST:PORT"),
    ('[server]\ndrain_delay = -1', "server.drain_delay", ">= 0"),
    ('[server]\ngrace = "soon"', "server.grace", "a number"),
    ('[server]\ngc_freeze_interval = -0.5', "server.gc_freeze_interval", ">= 0"),
    ('[server]\ngc_sweep_interval = 0', "server.gc_sweep_interval", ">= 1"),
    ('[server]\nlisten_port = 1', "server.listen_port", "unknown key"),
    ('[logging]\nlevel = "loud"', "logging.level", "one of debug"),
    ('[bogus]\nx = 1', "bogus", "one of the sections"),
    ('[state]\nurl = "postgres://x"', "state.url", "memory:// or redis://"),
    ('[[providers]]\nname = "a"\nkind = "nope"', "providers[0].kind", "one of openai"),
    ('[[providers]]\nname = "a"\nkind = "mock"\ncapabilities = ["telepathy"]',
     "providers[0].capabilities", "capabilities from"),
    ('[[providers]]\nname = "a"\nkind = "mock"\npriority = "high"', "providers[0].priority",
     "an integer"),
    ('[[providers]]\nname = "a"\nkind = "mock"\nmodels = [{ name = "m", input_per_mtok = -1 }]',
     "providers[0].models[0].input_per_mtok", ">= 0"),
    ('[[providers]]\nname = "Bad Name"\nkind = "mock"\nmodels = ["m"]', "providers[0].name", ""),
    ('[[providers]]\nname = "a"\nkind = "mock"\nmodels = ["m"]\n'
     '[[providers]]\nname = "a"\nkind = "mock"\nmodels = ["m"]', "providers[1].name",
     "not used by another"),
])
def test_each_bad_value_names_key_and_expectation(tmp_path: Path, text: str, key: str,
                                                  expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), env={})
    assert info.value.key == key
    assert expected in info.value.expected


def test_bad_env_override_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"PROVIDER_ROUTER_SERVER_WORKERS": "many"})
    assert info.value.key == "server.workers"
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"PROVIDER_ROUTER_NOPE": "1"})
    assert info.value.key == "PROVIDER_ROUTER_NOPE"


def test_auth_key_lists_are_not_overrides_but_a_typo_is_an_error() -> None:
    env = {"PROVIDER_ROUTER_CLIENT_KEYS": "a,b", "PROVIDER_ROUTER_ADMIN_KEYS": "c"}
    assert load_config(None, env=env).auth.client_keys_env == "PROVIDER_ROUTER_CLIENT_KEYS"
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"PROVIDER_ROUTER_CLIENT_KEYZ_KEYS": "a"})
    assert info.value.key == "PROVIDER_ROUTER_CLIENT_KEYZ_KEYS"


def test_kubernetes_service_links_are_not_overrides() -> None:
    env = {"PROVIDER_ROUTER_SERVICE_HOST": "10.0.0.1", "PROVIDER_ROUTER_SERVICE_PORT": "50051",
           "PROVIDER_ROUTER_PORT": "tcp://10.0.0.1:50051",
           "PROVIDER_ROUTER_PORT_50051_TCP_ADDR": "10.0.0.1"}
    assert load_config(None, env=env).server.listen == "0.0.0.0:50051"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert str(missing) in info.value.message


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[server\nlisten="), env={})
    assert "valid TOML" in info.value.expected


def test_cli_exits_2_with_a_message_not_a_traceback(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, '[server]\ndrain_delay = "x"')
    assert main(["serve", "--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "server.drain_delay" in err and "'x'" in err and "a number" in err
    assert "Traceback" not in err
    assert main(["serve", "--config", str(tmp_path / "nope.toml"), "--check"]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_cli_check_accepts_a_good_config(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(_write(tmp_path, GOOD)), "--check"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_state_redis_keys_load_with_their_defaults(tmp_path: Path) -> None:
    state = load_config(None, env={}).state
    assert (state.url, state.password_env, state.replicas, state.timeout_s, state.key_prefix) == (
        "memory://", "", 1, 0.005, "provider-router:")
    text = ('[state]\nurl = "rediss://redis.internal:6380/2"\npassword_env = "REDIS_PASSWORD"\n'
            'replicas = 3\ntimeout = 0.01\nkey_prefix = "pr:"\n')
    state = load_config(_write(tmp_path, text), env={"REDIS_PASSWORD": "pw"}).state
    assert (state.url, state.password_env, state.replicas, state.timeout_s, state.key_prefix) == (
        "rediss://redis.internal:6380/2", "REDIS_PASSWORD", 3, 0.01, "pr:")
    env = {"PROVIDER_ROUTER_STATE_URL": "redis://127.0.0.1:6379/0"}
    assert load_config(None, env=env).state.url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(("text", "env", "key", "expected"), [
    ('url = "redis://:hunter2@h:6379/0"', {}, "state.url", "without a password"),
    ('url = "redis://h:6379/x"', {}, "state.url", "DB a number"),
    ('password_env = "REDIS_PASSWORD"', {}, "state.password_env", "a set, non-empty"),
    ('password_env = "REDIS_PASSWORD"', {"REDIS_PASSWORD": ""}, "state.password_env",
     "a set, non-empty"),
    ("replicas = 0", {}, "state.replicas", ">= 1"),
    ("replicas = 1.5", {}, "state.replicas", "an integer"),
    ("timeout = 0", {}, "state.timeout", ">= 0.0001"),
    ('timeout = "fast"', {}, "state.timeout", "a number"),
    ('key_prefix = ""', {}, "state.key_prefix", "non-empty"),
    ('key_prefix = "a b"', {}, "state.key_prefix", "without spaces"),
    ("pasword_env = 1", {}, "state.pasword_env", "unknown key"),
])
def test_bad_state_values_name_the_key(tmp_path: Path, text: str, env: dict[str, str],
                                       key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, f"[state]\n{text}\n"), env=env)
    assert info.value.key == key
    assert expected in info.value.expected
    assert "hunter2" not in str(info.value)


def test_cli_accepts_a_redis_url_and_exits_2_on_a_bad_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, '[state]\nurl = "redis://127.0.0.1:6379/0"\n')
    assert main(["serve", "--config", str(good), "--check"]) == 0
    bad = _write(tmp_path, '[state]\nurl = "redis://127.0.0.1:6379/x"\n')
    assert main(["serve", "--config", str(bad), "--check"]) == 2
    err = capsys.readouterr().err
    assert "state.url" in err and "Traceback" not in err
