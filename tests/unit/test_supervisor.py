"""`serve --workers N`: the plan for the workers (the processes are tested in integration)."""

from __future__ import annotations

import sys

import pytest

from provider_router.config import build_config
from provider_router.errors import ConfigError
from provider_router.supervisor import backoff_s, check_workers, plan, worker_env


def _config(metrics_port: int = 0, listen: str = "127.0.0.1:7000"):  # type: ignore[no-untyped-def]
    return build_config({"server": {"listen": listen, "drain_delay": 1.0, "grace": 4.0},
                         "metrics": {"port": metrics_port}}, {}, source="test")


def test_workers_run_this_interpreter_with_the_same_arguments() -> None:
    p = plan(_config(), {"A": "1"}, "/etc/router.toml", "0.0.0.0:7001", 3)
    assert p.argv == (sys.executable, "-m", "provider_router", "serve",
                      "--config", "/etc/router.toml", "--listen", "0.0.0.0:7001")
    assert p.count == 3
    assert p.stop_timeout_s == pytest.approx(15.0)


def test_each_worker_is_one_process_with_its_own_metrics_port() -> None:
    p = plan(_config(metrics_port=9100), {"A": "1"}, None, None, 2)
    assert p.argv[-1] == "serve"
    assert worker_env(p, 0) == {"A": "1", "PROVIDER_ROUTER_SERVER_WORKERS": "1",
                                "PROVIDER_ROUTER_METRICS_PORT": "9100"}
    assert worker_env(p, 1)["PROVIDER_ROUTER_METRICS_PORT"] == "9101"
    no_metrics = plan(_config(), {}, None, None, 2)
    assert "PROVIDER_ROUTER_METRICS_PORT" not in worker_env(no_metrics, 1)


def test_several_workers_need_a_fixed_port() -> None:
    check_workers(_config(), None, 4)
    check_workers(_config(listen="127.0.0.1:0"), None, 1)
    with pytest.raises(ConfigError) as info:
        check_workers(_config(), "127.0.0.1:0", 2)
    assert info.value.key == "server.listen"


def test_several_workers_need_a_fixed_health_port() -> None:
    config = build_config({"server": {"listen": "127.0.0.1:7001",
                                      "health_listen": "127.0.0.1:0"}}, {}, source="test")
    check_workers(config, None, 1)
    with pytest.raises(ConfigError) as info:
        check_workers(config, None, 2)
    assert info.value.key == "server.health_listen"


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_s(n) for n in (0, 1, 2, 3, 4)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff_s(50) == 30.0


def test_the_cli_takes_a_positive_worker_count(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from provider_router.cli import build_parser, main

    assert build_parser().parse_args(["serve", "--workers", "2"]).workers == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--workers", bad])
    config = tmp_path / "router.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:0"\n[state]\nregistry_file = "none"\n')
    assert main(["serve", "--config", str(config), "--workers", "2", "--check"]) == 2
    assert "fixed port" in capsys.readouterr().err
    assert main(["serve", "--config", str(config), "--check"]) == 0
